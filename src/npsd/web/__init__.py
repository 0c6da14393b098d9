"""The dashboard at ``/app``: server-rendered pages for the people who run an NPS programme.

The top area below the app: pages parse, authorize (a session cookie), call the same service
functions as the API, and render Jinja2 templates. No business rule lives here.
"""
