"""Page script (app.py registers it with st.navigation); the page itself is ui/import_page.py."""

from ui import import_page as page

page.render()
