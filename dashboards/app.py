"""The review console's entry point: who is reviewing, then the pages (``st.navigation``).

Run it with ``chorus console --store URL`` or ``streamlit run dashboards/app.py -- --store URL``.
Pages live one per file in ``views/``; this file only sets up what every page needs: the store
(from ``--store`` or the Chorus configuration), the reviewer (OIDC or local mode, see
``dashboards/auth.py``; local mode only on this machine's loopback address), and the sidebar that
says who you are and what the queues hold.
"""

from __future__ import annotations

import streamlit as st

from dashboards import auth, data, render
from stream.config import ConfigError

st.set_page_config(page_title="Chorus review", page_icon=":material/policy:", layout="wide")

try:
    settings = data.settings()
except ConfigError as exc:
    st.error(f"The Chorus configuration is not valid: {render.md_escape(exc)}")
    st.stop()
reviewer = auth.current_reviewer(settings.console)
st.session_state["reviewer"] = reviewer

pages = {
    "Review": [
        st.Page("views/queue.py", title="Flag queue", icon=":material/flag:", url_path="queue", default=True),
        st.Page("views/campaigns.py", title="Campaign queue", icon=":material/hub:", url_path="campaigns"),
        st.Page("views/post.py", title="Post", icon=":material/article:", url_path="post"),
        st.Page("views/account.py", title="Account", icon=":material/person:", url_path="account"),
        st.Page("views/campaign.py", title="Campaign", icon=":material/share:", url_path="campaign"),
        st.Page("views/actions.py", title="Automated actions", icon=":material/bolt:", url_path="actions"),
    ],
    "Records": [
        st.Page("views/history.py", title="Decisions & audit", icon=":material/history:", url_path="history"),
        st.Page("views/overview.py", title="Overview", icon=":material/monitoring:", url_path="overview"),
    ],
}
page = st.navigation(pages)

with st.sidebar:
    st.caption("Signed in as")
    st.text(f"{render.visible(reviewer.name)}\nrole: {reviewer.role}")
    if auth.oidc_configured():
        st.button("Sign out", on_click=st.logout)
    elif not reviewer.can_decide:
        st.caption("Viewer: you can read everything but not act on cases nor download post text.")
    open_breakers = data.open_breakers().height
    if open_breakers:
        st.error(f"{open_breakers} circuit breaker(s) open: see Automated actions", icon=":material/warning:")
    st.caption("Store")
    st.text(data.store_label())

render.show_notice()
page.run()
