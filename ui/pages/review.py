"""Page script (app.py registers it with st.navigation); the page itself is ui/review.py."""

from ui import review as page

page.render()
