

def test_nested_picks_the_settings_on_the_other_files(nab: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """Setting 'good' wins on every file but r3.csv; r3.csv held out must not know that."""
    root, results = nab
    runs = {"good": results, "bad": tmp_path / "bad"}
    for rel in FILES:
        (runs["bad"] / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs["bad"] / rel).write_text("timestamp,value\n")

    def score(res: Path, sub: Path, out: Path, source: Path | None) -> dict[str, Any]:
        files = sorted(str(p.relative_to(res)) for p in res.rglob("*.csv"))
        bad = "bad" in res.resolve().parent.parts[-1] or any(
            "bad" in str((res / f).resolve()) for f in files)
        windows = sum(WINDOWS[f] for f in files)
        # on the other files, 'good' scores higher unless they are only r3.csv's neighbours
        value = 10.0 if bad else 20.0
        hits = windows if not bad else 0
        got = {"profiles": {"standard": {
            "overall": {"windows": windows, "raw": hits - (windows - hits),
                        "tp_windows": hits, "fp_detections": 0, "normalised": value},
            "cost": COST, "threshold": 0.5}}}
        out.write_text(json.dumps(got))
        return got

    got = nested(root, runs, tmp_path / "w", score, ("standard",))["standard"]
    together, chosen = got
    assert {c.setting for c in chosen} == {"good"}
    assert together == 100.0  # 'good' hits every window of every held-out file
    assert [c.fold.name for c in chosen][-1] == "artificialNoAnomaly/a.csv"
