"""Persistence shared by fusion and the API: tables, migrations, sessions, queries."""
