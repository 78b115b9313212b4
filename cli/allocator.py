"""`omnidecide train allocator`, `omnidecide allocate`, `omnidecide attribute` (issue D)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from omnidecide.cli.app import app, console, train_app
from omnidecide.models.errors import InputError


def _pairs(values: list[str], flag: str) -> dict[str, float]:
    """`--min a=100 --min b=5` -> {a: 100, b: 5}; a channel given twice is an error (the last would win unsaid)."""
    out: dict[str, float] = {}
    given: dict[str, str] = {}
    for v in values:
        name, sep, amount = v.partition("=")
        if not sep or not name.strip():
            raise InputError(f"{flag} {v!r}: expected CHANNEL=NUMBER")
        if name.strip() in given:
            raise InputError(f"{flag}: channel {name.strip()!r} is given twice ({given[name.strip()]}, {v.strip()}); "
                             "give each channel once")
        given[name.strip()] = v.strip()
        try:
            x = float(amount)
        except ValueError as e:
            raise InputError(f"{flag} {v!r}: {amount!r} is not a number") from e
        if not math.isfinite(x):  # nan/inf parse as floats; the plan request would fail on them with a traceback
            raise InputError(f"{flag} {v!r}: {amount!r} is not a finite number")
        out[name.strip()] = x
    return out


@train_app.command("allocator")
def train_allocator(history: Path = typer.Option(..., "--history"),
                    seed: int = typer.Option(0, "--seed", min=0),
                    timesteps: Optional[int] = typer.Option(None, "--timesteps", min=0, help="PPO steps (default: quick)"),
                    lift_tests: Optional[Path] = typer.Option(None, "--lift-tests", help="lift.csv: channel, start, end, "
                                                              "incremental_revenue, ci_low, ci_high (docs/data.md)")) -> None:
    """Fit the response model, build the env, train the agent, evaluate, save a version; prints the tag."""
    from omnidecide.store import registry
    from omnidecide.training.allocator import train

    tag = train(history, seed=seed, timesteps=timesteps, lift_tests=lift_tests)
    meta = registry.get("allocator", tag).info.metadata
    m, d = meta["metrics"], meta.get("diagnostics", {})
    reports = (f"; platform reports for {d['reported_channels']} channel(s), noise {d['report_sigma']:.2f}"
               if "reported_channels" in d else "") + (f"; {m['lift_tests']} lift test(s)" if m.get("lift_tests") else "")
    console.print(f"fit R² {m['fit_r2']:.3f}, MAPE {m['fit_mape']:.3f}, media share of revenue {m['fit_media_share']:.3f}"
                  f"{reports}; agent {'served' if m.get('agent_enabled') else 'gated off (the planner serves)'}; "
                  f"trained in {m['train_seconds']:.0f} s", highlight=False)
    print(tag)


def _request(**fields):
    """The HTTP request model, built from the flags: what it refuses (a negative or over-the-limit amount) is an
    InputError naming the flag (`--min a: ...`), as every other allocate error is, not a pydantic traceback."""
    from pydantic import ValidationError

    from omnidecide.models.allocator.constraints import FLAGS
    from omnidecide.serving.allocator import PlanRequest

    try:
        return PlanRequest(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = " ".join([getattr(FLAGS, str(first["loc"][0]), str(first["loc"][0])), *map(str, first["loc"][1:])])
        raise InputError(f"{where}: {first['msg']}") from None


def _check_outputs(paths: dict[str, Optional[Path]]) -> None:
    """Before planning: each file flag names a file, not a folder, and no two name the same file (the report or the
    experiment plan would overwrite the plan just written; a folder failed only after the plan was written)."""
    seen: dict[Path, str] = {}
    for flag, p in paths.items():
        if p is None:
            continue
        if p.is_dir():
            raise InputError(f"{flag} {p}: is a folder; give a file path")
        key = p.resolve()
        if key in seen:
            raise InputError(f"{flag} {p}: the same file as {seen[key]}; give each output its own file")
        seen[key] = flag


def _previous_plan(output: Path):
    """The plan at --output before this run, for the report's "what changed"; a file there that is not a readable
    CSV (empty, cut off) only means there is nothing to compare with: said, and overwritten as before."""
    import pandas as pd

    try:
        return pd.read_csv(output)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        console.print(f"note: {output} is not a readable plan ({str(e).strip() or type(e).__name__}); the report "
                      "shows no changes since a previous plan", highlight=False)
        return None


@app.command("allocate")
def allocate(budget: float = typer.Option(..., "--budget"), periods: int = typer.Option(..., "--periods"),
             output: Path = typer.Option(..., "--output"), reserve: float = typer.Option(0.15, "--reserve"),
             min_: list[str] = typer.Option([], "--min"), max_: list[str] = typer.Option([], "--max"),
             roi_floor: list[str] = typer.Option([], "--roi-floor"), actuals: Optional[Path] = typer.Option(None, "--actuals"),
             model: Optional[str] = typer.Option(None, "--model"),
             explore: Optional[Path] = typer.Option(None, "--explore", help="also write an experiment plan (CSV): "
                                                    "channels to vary, when, by how much, cost, expected narrowing"),
             report: Optional[Path] = typer.Option(None, "--report", help="also write a one-page HTML report")) -> None:
    """Plan spend per channel and period within budget and rules; writes period, channel, spend, expected_revenue,
    revenue_p10, revenue_p90 (the cell's 80% interval over the posterior draws), identification (the channel's, 0-1).

    Robust by default: budget moves away from last year's mix only as far as the posterior backs the move (a channel
    the history cannot identify stays near its historical spend; so does a channel whose weekly spend the others'
    spend explains, as when the budget was split by a fixed rule: its identification is 0).

    --min/--max CH=AMOUNT bound a channel's total over the horizon; --roi-floor CH=X keeps its expected ROI >= X;
    --reserve (share of B) is held back and written as one row `period=1, channel=reserve`;
    --actuals ACTUALS.csv (rows for the elapsed periods: period or date, spend_<channel>..., optional revenue, optional
    revenue_<channel> = the channel's measured incremental revenue, e.g. attributed) re-plans the rest from the adstock
    those periods left (the actual rows are written as periods 1..k); with revenue_<channel> each channel's response
    is first recalibrated to its realised / expected revenue (shrunk towards 1 over the first periods).
    --explore EXPERIMENTS.csv proposes one experiment per channel, least identified first: pulses of +/-50% over the
    first 8 weeks, their expected revenue cost and how much narrower the channel's 80% interval is expected to get
    (re-planning's own update rule, simulated under each posterior draw), beside what the plan alone would teach.
    --report plan.html writes a self-contained one-pager: response curves with bands, the plan by period and channel,
    marginal ROI, the cost of the reserve and of each rule, and what changed since the plan that was at --output.
    """
    import pandas as pd

    from omnidecide.models.allocator.constraints import check_request

    check_request(budget, periods, reserve)  # (before loading the model; Allocator.plan checks all flags again)
    _check_outputs({"--output": output, "--report": report, "--explore": explore})
    act = None
    if actuals is not None:
        from omnidecide.store.io import read_flag_csv

        act = read_flag_csv(actuals, "--actuals")
    from omnidecide.serving.allocator import AllocatorRuntime

    rt = AllocatorRuntime(model)
    req = _request(budget=budget, periods=periods, reserve=reserve, min=_pairs(min_, "--min"),
                   max=_pairs(max_, "--max"), roi_floor=_pairs(roi_floor, "--roi-floor"))
    resp, res = rt.plan(req, actuals=act)
    previous = _previous_plan(output) if report is not None and output.exists() else None
    output.parent.mkdir(parents=True, exist_ok=True)
    res.table.to_csv(output, index=False)
    s = res.summary
    console.print(f"model {rt.tag}; plan written to {output} ({len(res.table)} rows, {resp.latency_ms:.0f} ms)", highlight=False)
    if s["actual_periods"]:
        console.print(f"re-planned periods {s['actual_periods'] + 1}..{periods} after {s['actual_periods']} periods of actuals"
                      + (f" (realised/expected media revenue {s['realised_ratio']:.2f})" if s["realised_ratio"] is not None else ""),
                      highlight=False)
        if s.get("channel_ratio"):
            console.print("channel response recalibrated (realised/expected, shrunk): "
                          + ", ".join(f"{c} {r:.2f}" for c, r in s["channel_ratio"].items()), highlight=False)
        if s.get("draws_effective"):
            console.print("response draws reweighted by the measured channel revenue; effective draws per channel: "
                          + ", ".join(f"{c} {v:.1f}" for c, v in s["draws_effective"].items()), highlight=False)
    print(f"budget {budget:,.2f}  reserve {s['reserve']:,.2f}  planned spend {s['planned_spend']:,.2f}"
          + (f"  unallocated {s['unallocated']:,.2f}" if s["unallocated"] > 0.01 else ""))
    print(f"expected incremental revenue {s['expected_incremental_revenue']:,.2f}  ROI {s['roi']:.3f}")
    print(f"last year's mix at this budget: expected incremental revenue {s['historical_mix_revenue']:,.2f}")
    if s.get("plan_chosen"):
        passes = s["plan_floor_gain_p10"] >= 0
        print(f"plan served: {s['plan_chosen']} " + ("(the highest expected revenue among the plans that beat last "
              "year's mix and the equal split in 90% of the posterior draws)" if passes else
              "(no plan beats last year's mix and the equal split in 90% of the posterior draws: the closest one)"))
    print(f"{'channel':<20}{'spend':>16}{'hist. spend':>16}{'incr. revenue':>18}{'80% interval':>28}{'identified':>11}"
          f"{'ROI':>8}{'marginal ROI':>14}")
    for c, v in s["per_channel"].items():
        roi = f"{v['roi']:.2f}" if v["roi"] == v["roi"] else "-"
        band = f"{v['revenue_p10']:,.0f} - {v['revenue_p90']:,.0f}"
        print(f"{c:<20}{v['spend']:>16,.2f}{v['historical_spend']:>16,.2f}{v['incremental_revenue']:>18,.2f}{band:>28}"
              f"{v['identification']:>11.2f}{roi:>8}{v['marginal_roi']:>14.2f}")
    if report is not None:
        from omnidecide.cli.allocator_report import write_report

        write_report(report, rt.allocator, res, rt.tag, {"budget": budget, "periods": periods, "reserve": reserve,
                                                         "lo": req.min, "hi": req.max, "roi_floor": req.roi_floor,
                                                         "actuals": act}, previous)
        print(f"report written to {report}")
    if explore is not None:
        from omnidecide.models.allocator.explore import experiment_plan

        k = res.n_actual
        exp_ = experiment_plan(res.ensemble, res.spend[k:], rt.channels, res.identification, res.historical)
        explore.parent.mkdir(parents=True, exist_ok=True)
        exp_.to_csv(explore, index=False)
        print(f"\nexperiment plan written to {explore} (weeks counted from period {k + 1}):")
        print(exp_[["channel", "identification", "weeks", "spend_moved", "expected_revenue_cost", "expected_narrowing",
                    "narrowing_beyond_plan_alone"]].to_string(index=False))


@app.command("attribute")
def attribute(touchpoints: Path = typer.Option(..., "--touchpoints"), events: Path = typer.Option(..., "--events"),
              output: Path = typer.Option(..., "--output"),
              window_days: float = typer.Option(16.0, "--window-days", help="touches further apart than this start a new journey"),
              lookback_days: Optional[float] = typer.Option(None, "--lookback-days", help="a purchase this long after a touch counts for its journey (default: read off the data)"),
              bootstrap: int = typer.Option(100, "--bootstrap", help="journey resamples for the interval (0: none)"),
              seed: int = typer.Option(0, "--seed", min=0)) -> None:
    """Multi-touch attribution that counts only the purchases journeys can explain, with a 90% interval per channel,
    beside Markov, last-click, first-click and linear shares.

    Conversions are the purchase events of EVENTS (every customer's, exposed or not: they set the organic
    baseline); journeys are each user's touches in time order, split by gaps longer than --window-days.
    """
    from omnidecide.models.allocator.attribution import attribute as run
    from omnidecide.store.io import load

    if not (math.isfinite(window_days) and window_days > 0):  # nan/inf pass a `<= 0` test, then crash the split
        raise InputError(f"--window-days must be a positive number of days, got {window_days}")
    if lookback_days is not None and not 0 < lookback_days <= window_days:
        raise InputError(f"--lookback-days must be in (0, --window-days={window_days}], got {lookback_days}")
    if bootstrap < 0:
        raise InputError(f"--bootstrap must be >= 0, got {bootstrap}")
    tl, el = load(touchpoints, "touchpoints"), load(events, "events")
    for loaded in (tl, el):
        if loaded.n_rejected:
            console.print(loaded.summary(), highlight=False)
    tp, ev = tl.data, el.data
    if tp.empty:
        raise InputError(f"{touchpoints}: no usable touchpoints ({tl.n_rejected} rows rejected"
                         + (f", reasons in {tl.rejects_path}" if tl.rejects_path else "") + ")")
    conv = ev[ev["event"] == "purchase"]
    if conv.empty:
        raise InputError(f"{events}: no purchase events, so no conversion to attribute")
    out = run(tp.assign(ts=tp["timestamp"]), conv.assign(ts=conv["timestamp"])[["user_id", "ts"]], window_days,
              lookback_days, bootstrap, seed)
    if not out.attrs["conversions"]:  # every share would be 0: a table that attributes nothing, written as a result
        raise InputError(f"{events}: no purchase in it follows a touch in {touchpoints} by the same user_id within "
                         f"{out.attrs['lookback_days']:g} days, so there is nothing to attribute; check that both files "
                         "write user_id the same way and that their dates overlap")
    output.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(output, index=False)
    a = out.attrs
    console.print(f"{a['paths']} journeys, {a['conversions']} with a purchase within {a['lookback_days']:g} days of a "
                  f"touch, {max(a['explained'], 0):.0f} of them explained by the channels (model: {a['model']}); written to "
                  f"{output}", highlight=False)
    print(out[["channel", "share", "share_low", "share_high", "markov_share", "last_click_share",
               "first_click_share"]].to_string(index=False))
