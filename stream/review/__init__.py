"""Review data access: what the console's pages call, as plain functions over a :class:`~stream.store.database.Store`.

Every action a reviewer can take is a function here that the tests drive directly, on SQLite and
on PostgreSQL; the console (``dashboards/data.py``) only adds caching. Import the module you need;
nothing is re-exported here.

A *case* is a flag (one detector's flag on one post) or a campaign (written by the coordination
stage); both carry ``status`` and ``assignee``.

Acting on cases (each change audited in the same transaction as the change):

* :mod:`~stream.review.claims` — claim, release, assign: who works a case;
* :mod:`~stream.review.decisions` — decide one case, many (bulk), or a campaign with its members' flags;
* :mod:`~stream.review.reversal` — undo decisions (appeals), back to the queue they came from;
* :mod:`~stream.review.cases` — what the three share: case types, compare-and-set, audit rows.

Reading:

* :mod:`~stream.review.queues` — the flag and campaign queues (filters, sorts, SLA ages), "next case";
* :mod:`~stream.review.search` — the quick search: what a post, flag or account id, or a piece of text,
  typed on any page points at;
* :mod:`~stream.review.posts` — one post with its detector results, flags and decisions;
* :mod:`~stream.review.accounts` — one account: aggregate, machine share, posts, campaigns;
* :mod:`~stream.review.account_page` — the account page: posts, flags, machine share by day, campaigns,
  automated actions, decisions and audit entries of one account;
* :mod:`~stream.review.campaigns` — one campaign: members, timeline, links;
* :mod:`~stream.review.edges` — a campaign's links, stored or computed by the coordination library;
* :mod:`~stream.review.history` — decisions and the audit log;
* :mod:`~stream.review.labels` — the labelled-decisions export and detector precision;
* :mod:`~stream.review.metrics` — flag volume, worker throughput, dead letters;
* :mod:`~stream.review.evidence` — a detector's evidence as an analyst reads it (pure): contributions in
  plain words, the score against its threshold, surprising tokens located in the text, caveats.

The team's own records:

* :mod:`~stream.review.templates` — statement templates: named statements of reasons a lead writes
  once and reviewers start from (each change audited);
* :mod:`~stream.review.placeholders` — the placeholders in a statement (pure): those the case fills
  (``{account}``, ...) and those a reviewer must (``[[...]]``);
* :mod:`~stream.review.notes` — team notes on a post, flag, account or campaign: internal, appended,
  never edited, never in a statement or an export (each audited);
* :mod:`~stream.review.saved_filters` — a reviewer's named flag-queue filters and the team's shared
  ones (a preference: no audit row).

:mod:`~stream.review.vocabulary` holds the decisions, reason codes and case states. Reviewers, their
roles, refusals and outcomes live one layer down in :mod:`stream.store.reviewers`, because the
policies' automated-action pages (:mod:`stream.policy.actions`, which the worker imports) use them too.
"""
