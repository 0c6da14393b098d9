"""Daily and weekly digest e-mails: the score, its change and the newest detractors."""
