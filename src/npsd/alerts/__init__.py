"""Alert rules and their deliveries: an e-mail or chat message when an answer matches a rule."""
