"""The one simulator of synthetic post streams: the demo's network and the coordination tests' stream.

It never uses real people's posts. Accounts of three kinds write:

* **organic** accounts post on their own schedule: in the demo's voice from topic templates, replying
  to and reposting earlier posts, with their own links and hashtags; in the co-action stream's voice
  from a Zipf vocabulary, acting on shared pools of popular posts, links and hashtags, so co-actions
  also happen by chance (with the awkward cases: mention-only texts, reposts carrying urls, replies
  that are reposts);
* **machine** accounts post real SmolLM2 output (committed in ``demo_posts/``); some posts leak chat
  boilerplate ("As an AI language model, ...") as real bot networks do;
* **campaigns**: groups of accounts that, in waves, do the same thing within seconds of each other:
  the demo's message waves (one message lightly reworded, one link and hashtag, reposts of the first
  post), the six co-action kinds (repost, text, near-duplicate, link, reply, hashtags), or an LLM
  paraphrase campaign's own-wording posts (caught only by the paraphrase network and the AI-text
  detector together).

One core (:mod:`.network`: seeded generator, accounts with their campaign, wave scheduling, post
construction, truth) and one entry point (:func:`simulate`) build every stream from a
:class:`SimulationConfig`; its defaults are the demo and :func:`coaction_config` is the co-action
preset. :func:`simulate_posts` gives the demo's Kafka-ready messages (truth in ``meta["sim"]``, mixed
time formats) and :func:`generate_stream` the co-action stream as a frame plus account truth.
"""

from stream.simulation.config import COACTION_KINDS, WAVE_KINDS, SimulationConfig, coaction_config
from stream.simulation.malformed import malformed_messages
from stream.simulation.outputs import GeneratedStream, as_frame, as_messages
from stream.simulation.simulate import generate_stream, simulate, simulate_posts
from stream.simulation.texts import LLM_CAMPAIGN_MESSAGES

__all__ = [
    "COACTION_KINDS",
    "LLM_CAMPAIGN_MESSAGES",
    "WAVE_KINDS",
    "GeneratedStream",
    "SimulationConfig",
    "as_frame",
    "as_messages",
    "coaction_config",
    "generate_stream",
    "malformed_messages",
    "simulate",
    "simulate_posts",
]
