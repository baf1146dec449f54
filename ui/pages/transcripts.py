"""Page script (app.py registers it with st.navigation); the page itself is ui/transcripts.py."""

from ui import transcripts as page

page.render()
