"""Authorization: who is calling (principals from OAuth2 JWT access tokens) and what they may do."""
