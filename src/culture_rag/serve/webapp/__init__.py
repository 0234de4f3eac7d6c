"""The Gradio web chat (`culture-rag serve`, app/app.py), one job a module:

- page.py: the Blocks (answer settings, the tabs, the API, the queue); the no-index page
- chat_tab.py: the Chat tab: streamed answers, sources and their viewer, export, feedback
- library_tab.py: the Library tab: filter, add and remove papers
- api.py: the named endpoints for gradio_client
- server.py: opening the index, warming up, launching with safe defaults
- guard.py: allowed routes, security headers, loopback unless logins, the login check
- render.py, assets.py: what the page shows (escaped HTML and Markdown), its CSS and script
"""

import os

# Gradio reads this for its version check and telemetry (at import in some versions, at each
# Blocks in others); set here, in the package, it comes before Gradio whichever module is
# imported first. The app never calls home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
