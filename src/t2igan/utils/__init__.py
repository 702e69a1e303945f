"""Small shared helpers: file io, distributed helpers, seeding."""
