"""The registry entries of the SPEC section 3b candidates: the warm starts the field cites.

Each is our construction of a paper's idea, not a reproduction of that paper's code (docs/strategies.md
section 9); the builders live in their own modules of growth/widen/. net2net (noise 0) and msg (masks 0)
preserve the function at lag 0, the others do not. Imported by growth/widen/__init__.py, after the
built-ins of candidates.py, so the registry is complete once `growth.widen` is imported.
"""

from __future__ import annotations

from growth.config import LigoConfig, MsgConfig, Net2NetConfig, ShrinkPerturbConfig, ZeroPadConfig
from growth.widen import bert2bert_aki, ligo, msg, net2net, shrink_perturb, zero_pad
from growth.widen.registry import Candidate, register

# fmt: off
register(Candidate(
    name="net2net", build=net2net.net2net, order=70, color="C8", preserving=True,
    description="Net2Net-style random replication of units, outgoing weights divided by replica counts",
    options=Net2NetConfig, options_field="net2net", check=net2net.check, in_default_pool=False,
))
register(Candidate(
    name="zero_pad", build=zero_pad.zero_pad, order=72, color="C9", preserving=False,
    description="small tensors placed in a zero (or scaled fresh) wide block, moments placed, new entries 0",
    options=ZeroPadConfig, options_field="zero_pad", check=zero_pad.check, in_default_pool=False,
))
register(Candidate(
    name="shrink_perturb", build=shrink_perturb.shrink_perturb, order=74, color="#aec7e8", preserving=False,
    description="zero_pad shrunk by lambda plus sigma times a fresh wide init",
    options=ShrinkPerturbConfig, options_field="shrink_perturb", check=shrink_perturb.check, in_default_pool=False,
))
register(Candidate(
    name="msg", build=msg.msg, order=76, color="#ffbb78", preserving=True,
    description="masked structural growth: new units behind masks that ramp 0 -> 1 in the train step",
    options=MsgConfig, options_field="msg", check=msg.check, in_default_pool=False,
))
register(Candidate(
    name="bert2bert_aki", build=bert2bert_aki.bert2bert_aki, order=78, color="#98df8a", preserving=False,
    description="bert2BERT-style advanced knowledge init: new units' incoming weights from the next block",
    in_default_pool=False,
))
register(Candidate(
    name="ligo", build=ligo.ligo, order=80, color="#ff9896", preserving=False,
    description="LiGO-style learned growth operator, trained on pre-growth batches (charged as growth_tokens)",
    options=LigoConfig, options_field="ligo", check=ligo.check, in_default_pool=False, pregrowth_batches=True,
))
# fmt: on
