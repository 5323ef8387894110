"""Statement templates: the named statements of reasons reviewers start a decision's statement from.

Everyone reads them here (disabled ones included, marked); leads create, edit, disable and enable
them (:mod:`dashboards.templates_view`; each change audited by :mod:`stream.review.templates`). A page
of its own, not a corner of the queue: writing a statement the users will be told is a lead's task,
not part of clearing a queue. Reviewers pick a template in the decision panel of a post or campaign.
"""

from __future__ import annotations

import streamlit as st

from dashboards import team_data, templates_view

reviewer = st.session_state["reviewer"]

st.title("Statement templates")
templates = team_data.statement_templates(include_disabled=True)
templates_view.template_table(templates)
st.subheader("Write a template")
templates_view.template_editor(reviewer, templates)
