"""``embedtune doctor``: the versions that matter, the device, bf16 support, LoRA's libraries and the lock."""

from __future__ import annotations

import argparse

from embedtune import versions


def add_doctor_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune doctor``."""
    parser = commands.add_parser(
        "doctor",
        help="Show the library versions, device, bf16 support, and whether LoRA's libraries and the lock agree.",
        description=(
            "Print the versions that matter (Python, torch, transformers, sentence-transformers, peft, datasets, "
            "accelerate), the device training would use and whether it computes bf16 natively, whether transformers "
            "and peft can add LoRA adapters together, whether every dependency is within embedtune's bounds, and, "
            "in a source checkout, whether the installed packages match pylock.toml (or pylock.cuda.toml). Exit "
            "code 0 when all agree, 1 otherwise."
        ),
    )
    parser.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Print the report; return 0 when nothing is wrong, 1 when a check failed."""
    lines, problems = doctor_report()
    print("\n".join(lines))
    for problem in problems:
        print(f"problem: {problem}")
    return 1 if problems else 0


def doctor_report() -> tuple[list[str], list[str]]:
    """Return ``(lines, problems)``: the report's lines, and one line per failed check (empty when all agree)."""
    versions_found = versions.key_versions()
    lines = [f"embedtune {versions_found['embedtune']} ({_where_installed(versions)})"]
    lines.append(f"python: {versions.python_description()}")
    lines += [f"{name}: {versions_found[name] or 'not installed'}" for name in versions.KEY_LIBRARIES]
    lines += _device_lines()
    problems = []
    peft_problem = versions.peft_problem()
    lines.append(f"LoRA (transformers + peft): {'ok' if peft_problem is None else 'cannot run'}")
    if peft_problem is not None:
        problems.append(peft_problem)
    bound_problems = versions.bound_problems()
    lines.append(f"dependency bounds: {'all met' if not bound_problems else f'{len(bound_problems)} not met'}")
    problems += bound_problems
    lock_line, lock_problems = _lock_lines(versions)
    lines.append(lock_line)
    problems += lock_problems
    return lines, problems


def _where_installed(versions) -> str:
    return f"source checkout {versions.PROJECT_ROOT}" if versions.running_from_checkout() else "installed package"


def _device_lines() -> list[str]:
    # torch: imported only when a command runs, so `embedtune --help` starts fast
    import torch

    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.models.precision import cpu_has_native_bf16
    from embedtune.training.arguments import mixed_precision

    fp16, bf16 = mixed_precision("auto")
    auto = "bf16 autocast" if bf16 else "fp16 autocast" if fp16 else "fp32"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count()))
        device = f"cuda ({torch.cuda.device_count()} GPU: {names}; CUDA {torch.version.cuda})"
        native = torch.cuda.is_bf16_supported()
    else:
        device = f"cpu ({torch.get_num_threads()} threads; no CUDA GPU visible)"
        native = cpu_has_native_bf16()
    return [f"device: {device}", f"bf16: {'native' if native else 'not native'}; train.precision auto = {auto}"]


def _lock_lines(versions) -> tuple[str, list[str]]:
    """Return the lock line and its problems: satisfied when the installed packages match one of the locks."""
    try:
        statuses = versions.lock_status()
    except (OSError, ValueError) as error:
        return f"lock: cannot be read ({error})", [str(error)]
    if not statuses:
        return "lock: none (not a source checkout)", []
    satisfied = [status for status in statuses if status.satisfied]
    if satisfied:
        return f"lock: {satisfied[0].path.name} satisfied ({satisfied[0].packages} packages)", []
    closest = min(statuses, key=lambda status: len(status.mismatches))
    shown = "; ".join(closest.mismatches[:5]) + (" ..." if len(closest.mismatches) > 5 else "")
    problem = f"installed packages differ from {closest.path.name} ({len(closest.mismatches)}): {shown}"
    return f"lock: not satisfied ({len(closest.mismatches)} differ from {closest.path.name})", [problem]
