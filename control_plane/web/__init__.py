"""The web panel: pages the control plane renders for people, at ``/``.

- ``pages.py``   the page routes, declared in the same route table as the JSON API (access,
                 permission node, rate limit), so the route walks cover them;
- ``render.py``  Jinja2 with autoescaping: what a page shows, never whether it may be shown;
- ``assets.py``  our own CSS and JavaScript (``static/``), served under content-hashed names
                 with long-lived caching;
- ``errors.py``  how a page answers an error: an HTML page, or the sign-in page when the
                 visitor is not signed in.

Pages read through the same services as the API and act only through the JSON API (the
browser code in ``static/app.js`` sends the session's CSRF token). They carry a strict CSP:
no inline script or style, no eval, no framing (``security_headers``).
"""
