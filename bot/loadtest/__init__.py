"""``python -m bot loadtest``: the Discord frontend under load, the bot's own cost measured alone.

N people each write one message at once, each in a thread of their own the bot opened earlier; a
scripted OpenAI-compatible server streams every reply (``reply_chars`` characters over ``reply_seconds``)
to the real bot (``run_bot``: discord.py, the cogs, the renderer and its throttles, the chat service, a
SQLite store, the remote backend), which shows them in a fake Discord on loopback. The report says:

- ``bot``: event-loop lag p50/p99/max (a task sleeping 10 ms at a time records its overshoot), CPU
  seconds and cores, RSS before and at peak, and CPU and RSS per conversation;
- ``discord``: REST requests per second (mean, and the most in any one second: never above Discord's
  global limit of 50), global and route 429s, other errors, edits per message (mean, and the most in
  any 5 seconds: Discord's per-channel bucket allows 5);
- ``replies``: every thread must end with exactly one message from the bot showing the whole text
  (else it counts as lost, duplicated or cut short), and the seconds to the placeholder, to the first
  text and to the final edit (p50/p99/max);
- ``machine``: the CPU kind, the load averages, and the cores other processes kept busy meanwhile;
- ``checks`` (must hold at any load) and ``targets`` (issue 19's, set for 300 conversations).

Where the fakes live, and why: the fake Discord (``tests/fakediscord``) and the fake vLLM's SSE framing
(``tests/inference/remote/_fake_vllm.py``) are the tests' own, and they stay there: moving some 4,000
lines of test doubles into the installed package, for a command only a developer runs, would ship test
code to every deployment. So the load test runs from a source checkout only (``checkout_root`` says so
clearly otherwise), and what imports ``tests`` (``_world``, ``_observe``, ``_scripted``) runs in a child
process, ``python -m bot.loadtest._world``, that the parent starts with the checkout on ``PYTHONPATH``.
The child is also what makes the figures the bot's alone: the fakes' CPU, memory and event loop are not
in the bot's process (their CPU is reported beside it, as ``fakes_cpu_s``).
"""

from bot.loadtest._report import LoadOptions, print_report
from bot.loadtest._runner import checkout_root, run_loadtest

__all__ = ["LoadOptions", "checkout_root", "print_report", "run_loadtest"]
