"""What a team does with an answer: tags, notes, a follow-up status and assignee, with history."""
