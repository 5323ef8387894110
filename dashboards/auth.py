"""Who is reviewing: OIDC through ``st.login`` when an identity provider is configured, else local mode.

No passwords are stored or checked here, ever. Two modes:

* **OIDC** (several analysts): put an ``[auth]`` section in ``.streamlit/secrets.toml``
  (``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret``,
  ``server_metadata_url``; see ``dashboards/README.md``; needs ``streamlit[auth]``). The reviewer is
  the e-mail the identity provider vouches for; the role comes from ``[chorus.roles]`` in the same
  file (``"lead@example.org" = "lead"``), and anyone not listed gets ``[chorus] default_role``,
  ``viewer`` unless set: an unknown person can look but not act.
* **Local** (one analyst on their own machine, the demo): no ``[auth]`` section. The reviewer is
  ``CHORUS_REVIEWER`` (default: the OS user name) with role ``CHORUS_REVIEWER_ROLE`` (default
  ``reviewer``). Whoever can start the console on the host is trusted, exactly as whoever can open
  the SQLite file is; the audit log records the name given.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import Any

import streamlit as st

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


def local_reviewer(env: Mapping[str, str] | None = None) -> Reviewer:
    """The local-mode reviewer from ``CHORUS_REVIEWER`` / ``CHORUS_REVIEWER_ROLE``."""
    env = os.environ if env is None else env
    name = env.get("CHORUS_REVIEWER", "").strip() or f"{getpass.getuser()} (local)"
    role = env.get("CHORUS_REVIEWER_ROLE", "").strip().lower() or "reviewer"
    if role not in ROLES:
        raise ValueError(f"CHORUS_REVIEWER_ROLE={role!r} is not a role; use one of {', '.join(ROLES)}")
    return Reviewer(name, role)


def oidc_role(email: str) -> str:
    """The role ``[chorus.roles]`` gives this e-mail, else ``[chorus] default_role`` (``viewer``)."""
    chorus = _secrets_section("chorus")
    roles = chorus.get("roles") or {}
    role = str(roles.get(email) or roles.get(email.lower()) or chorus.get("default_role") or "viewer").lower()
    return role if role in ROLES else "viewer"


def current_reviewer() -> Reviewer:
    """The reviewer of this session; in OIDC mode, shows the sign-in screen and stops until signed in."""
    if not oidc_configured():
        # Fixed for the session at its first run, like a sign-in would be.
        if "chorus_local_reviewer" not in st.session_state:
            st.session_state["chorus_local_reviewer"] = local_reviewer()
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
