"""Page script (app.py registers it with st.navigation); the page itself is ui/export.py."""

from ui import export as page

page.render()
