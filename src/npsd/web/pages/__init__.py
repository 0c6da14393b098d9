"""The dashboard's pages, one module per section; each parses, authorizes, calls services, renders."""
