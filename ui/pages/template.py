"""Page script (app.py registers it with st.navigation); the page itself is ui/template.py."""

from ui import template as page

page.render()
