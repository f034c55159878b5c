"""Server-rendered HTML pages (Jinja2 templates, plain forms; they work without JavaScript)."""
