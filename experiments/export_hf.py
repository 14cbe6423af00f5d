"""Export a run's model, or a candidate grown from it, as a Hugging Face save_pretrained directory.

`python -m experiments.export_hf run=RUN_DIR out=DIR [candidate=NAME] [step=N] [tokenizer=PATH] [growth.k=3 ...]`

RUN_DIR is a pretraining run or one written by experiments.import_hf; without `candidate` its checkpoint
is exported as is, with one the candidate is grown from it (as the runner grows it) first. Any other
key=value overrides the run's saved config (e.g. growth.k=3). Writes config.json, model.safetensors and
the tokenizer; load it with transformers' AutoModelForCausalLM.from_pretrained(DIR).
"""

from experiments.cli import command
from growth.interop import export_run, hf_export
from growth.interop.hf_files import HFImportError

OWN = ("run", "out", "candidate", "step", "tokenizer")


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """(this command's own key=value arguments, the overrides of the run's config)."""
    own, overrides = {}, []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise HFImportError(f"argument {arg!r} is not key=value; usage: {__doc__.splitlines()[2].strip('`')}")
        if key in OWN:
            own[key] = value
        else:
            overrides.append(arg)
    missing = [k for k in ("run", "out") if k not in own]
    if missing:
        raise HFImportError(f"missing {', '.join(f'{k}=...' for k in missing)}; usage: {__doc__.splitlines()[2]}")
    return own, overrides


def export_hf(argv: list[str]) -> None:
    own, overrides = parse(argv)
    step = int(own["step"]) if "step" in own else None
    cfg, params, tok = export_run.load_model(own["run"], step, own.get("candidate"), overrides)
    print(hf_export.export(cfg, params, own["out"], own.get("tokenizer") or tok))


main = command(export_hf)

if __name__ == "__main__":
    main()
