"""Page script (app.py registers it with st.navigation); the page itself is ui/model.py."""

from ui import model as page

page.render()
