"""Page script (app.py registers it with st.navigation); the page itself is ui/agreement.py."""

from ui import agreement as page

page.render()
