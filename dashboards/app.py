"""The review console's entry point: who is reviewing, then the pages (``st.navigation``).

Run it with ``chorus console --store URL`` or ``streamlit run dashboards/app.py -- --store URL``.
Pages live one per file in ``views/``; this file only sets up what every page needs: the store
(from ``--store`` or the Chorus configuration), the reviewer (OIDC or local mode, see
``dashboards/auth.py``; local mode only on this machine's loopback address), and the sidebar that
says who you are and what the queues hold.

The sidebar also holds the quick search, on every page: a post id, a flag id or an account id
(matched exactly) opens that post, case or account; anything else opens the flag queue searched for
it (the queue's own search, :mod:`stream.review.search`). ``/`` focuses it from anywhere but a text
box (a small script, :data:`dashboards.render.QUICK_SEARCH_HOTKEY`: Streamlit has no shortcut that
focuses a text box). A page opened on another case or subject (submit and next, a search, a link)
starts at its top (:func:`dashboards.render.scroll_to_top_html`), not where the last one was scrolled.
"""

from __future__ import annotations

import streamlit as st

from dashboards import auth, data, render
from stream.config import ConfigError

st.set_page_config(page_title="Chorus review", page_icon=":material/policy:", layout="wide")
st.html(render.FRAME_CSS)  # styles only: drawn nowhere

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
        st.Page("views/templates.py", title="Statement templates", icon=":material/description:", url_path="templates"),
    ],
}
page = st.navigation(pages)

#: Session-state keys: what the last run showed (page and query parameters), and how many times it changed.
VISIT_KEY, VISITS_KEY = "chorus-visit", "chorus-visits"


def open_search(text: str) -> None:
    """Open what the quick search names; a text search opens the flag queue searched for it."""
    found = data.quick_search(text)
    if found is None:
        return
    if found.kind == "flag":
        st.switch_page("views/post.py", query_params={"flag": found.target})
    if found.kind == "post":
        st.switch_page("views/post.py", query_params={"post": found.target})
    if found.kind == "account":
        data.account_link(found.target)
    if not found.flags:
        data.notify(
            "warning",
            f"Nothing matches “{found.target}”: no post, flag or account has that id and no flagged post's "
            "text contains it.",
        )
        return
    st.session_state["q-search"] = found.target  # the queue's own search box (views/queue.py)
    data.notify(
        "info",
        f"{found.flags:,} {'flag' if found.flags == 1 else 'flags'} in any state match “{found.target}”; "
        "the queue shows the ones its status filter keeps, the undecided ones by default.",
    )
    st.switch_page("views/queue.py")


with st.sidebar:
    with st.form("quick-search-form", clear_on_submit=True, border=False):
        typed = st.text_input(
            "Quick search  ( / )",
            key=render.QUICK_SEARCH_KEY,
            placeholder="post, flag or account id, or text",
            help="Press / on any page to come here. A post, flag or account id opens it (exact match); "
            "anything else searches the flag queue (post text, any case).",
        )
        searched = st.form_submit_button("Search", icon=":material/search:")
    st.html(render.QUICK_SEARCH_HOTKEY, unsafe_allow_javascript=True)
    if searched and typed and typed.strip():
        open_search(typed)
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

# A new case or subject starts at its top: the browser would keep the last one's scroll position.
visit = (page.url_path, tuple(sorted(st.query_params.to_dict().items())))
if st.session_state.get(VISIT_KEY, visit) != visit:
    st.session_state[VISITS_KEY] = st.session_state.get(VISITS_KEY, 0) + 1
    with st.sidebar:
        st.html(render.scroll_to_top_html(st.session_state[VISITS_KEY]), unsafe_allow_javascript=True)
st.session_state[VISIT_KEY] = visit

render.show_notice()
page.run()
