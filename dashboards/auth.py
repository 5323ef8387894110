"""Who is reviewing: OIDC through ``st.login`` when an identity provider is configured, else local mode.

No passwords are stored or checked here, ever. Two modes:

* **OIDC** (several analysts): put an ``[auth]`` section in ``.streamlit/secrets.toml``
  (``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret``,
  ``server_metadata_url``; see ``dashboards/README.md``; needs ``streamlit[auth]``). The reviewer is
  the e-mail the identity provider vouches for; the role comes from ``[chorus.roles]`` in the same
  file (``"lead@example.org" = "lead"``), and anyone not listed gets ``[chorus] default_role``,
  ``viewer`` unless set: an unknown person can look but not act.
* **Local** (one analyst on their own machine, the demo): no ``[auth]`` section. The reviewer is
  ``[console] reviewer`` (``CHORUS_REVIEWER``; default: the OS user name) with ``[console]
  reviewer_role`` (``CHORUS_REVIEWER_ROLE``; default ``reviewer``), read like every setting by
  :meth:`stream.config.ChorusConfig.load`. Whoever can start the console on the host is trusted,
  exactly as whoever can open the SQLite file is; the audit log records the name given. So local
  mode serves this machine only: on any other address the console refuses to start
  (:func:`refuse_local_mode_off_loopback`; ``chorus console`` refuses before starting Streamlit).

What a role may take away is decided here too: :func:`can_export_text` (viewers read post text on
screen but never download it).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit import config as streamlit_config

from stream.config import ConsoleConfig, is_loopback, local_mode_refusal
from stream.store.reviewers import ROLES, Reviewer


def _secrets_section(name: str) -> Mapping[str, Any]:
    try:
        section = st.secrets.get(name)
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        return {}
    return section if isinstance(section, Mapping) else {}


def oidc_configured() -> bool:
    """True when secrets name an identity provider (an ``[auth]`` section)."""
    return bool(_secrets_section("auth"))


def _os_user() -> str:
    """The OS account running the console, from the account database (``getpass`` would read ``$USER``
    first: the configuration loader is the one reader of the environment); ``getpass`` where there is none."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # Windows; a container's UID without a passwd entry
        return getpass.getuser()


def local_reviewer(console: ConsoleConfig) -> Reviewer:
    """The local-mode reviewer: ``[console] reviewer`` / ``reviewer_role`` of the configuration."""
    name = (console.reviewer or "").strip() or f"{_os_user()} (local)"
    return Reviewer(name, console.reviewer_role)


def can_export_text(reviewer: Reviewer | None) -> bool:
    """Whether ``reviewer`` may take post text out of the console (the labelled-decisions export, a
    long post's full-text download, a table's CSV download: :func:`dashboards.render.without_text_for_viewers`).
    Reviewers and leads may; viewers read every post on screen but do not carry strangers' words away.
    No reviewer (outside a session): no."""
    return reviewer is not None and reviewer.role in ("reviewer", "lead")


def serves_beyond_this_machine(address: str | None, *, server_running: bool = True) -> bool:
    """Whether a Streamlit server whose ``server.address`` is ``address`` can be reached from other machines.

    Unset means every interface (Streamlit's default), except when no server listens at all (a test
    run through ``streamlit.testing``).
    """
    if not (address or "").strip():
        return server_running
    return not is_loopback(address)


def refuse_local_mode_off_loopback() -> None:
    """In local mode, stop the page with the reason unless this server listens on this machine only.

    ``chorus console`` refuses before Streamlit starts; this catches ``streamlit run`` by hand. (The
    options are read through ``streamlit.config`` at call time, as a test run patches them.)
    """
    address = streamlit_config.get_option("server.address")
    if serves_beyond_this_machine(address, server_running=not streamlit_config.get_option("global.appTest")):
        st.title("Chorus review console")
        st.error(local_mode_refusal(address), icon=":material/lock:")
        st.stop()


def oidc_role(email: str) -> str:
    """The role ``[chorus.roles]`` gives this e-mail, else ``[chorus] default_role`` (``viewer``)."""
    chorus = _secrets_section("chorus")
    roles = chorus.get("roles") or {}
    role = str(roles.get(email) or roles.get(email.lower()) or chorus.get("default_role") or "viewer").lower()
    return role if role in ROLES else "viewer"


def current_reviewer(console: ConsoleConfig) -> Reviewer:
    """The reviewer of this session; in OIDC mode, shows the sign-in screen and stops until signed in.

    In local mode, the reviewer ``console`` names, and only on a server that listens on this machine.
    """
    if not oidc_configured():
        refuse_local_mode_off_loopback()
        # Fixed for the session at its first run, like a sign-in would be.
        if "chorus_local_reviewer" not in st.session_state:
            st.session_state["chorus_local_reviewer"] = local_reviewer(console)
        return st.session_state["chorus_local_reviewer"]
    if not st.user.is_logged_in:
        st.title("Chorus review console")
        st.write("Sign in with your organisation's account to review flagged posts and campaigns.")
        provider = _secrets_section("chorus").get("login_provider")
        st.button("Sign in", type="primary", on_click=st.login, args=(provider,) if provider else ())
        st.stop()
    email = str(st.user.get("email") or st.user.get("preferred_username") or st.user.get("sub") or "")
    if not email:
        st.error("The identity provider did not say who you are (no email claim); ask an admin to add it.")
        st.stop()
    return Reviewer(email, oidc_role(email))
