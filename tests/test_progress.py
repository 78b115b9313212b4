"""Long work reports its steps; without a listener the reports cost nothing and print nothing."""
from omnidecide.training import progress


def test_steps_reach_the_listener_in_order_and_finish_at_total():
    seen = []
    with progress.listening(lambda *a: seen.append(a)):
        with progress.task("train x", 3):
            progress.step("load")
            progress.step("fit")
            progress.step("save")
    assert seen == [("train x", "load", 0, 3), ("train x", "fit", 1, 3), ("train x", "save", 2, 3),
                    ("train x", "done", 3, 3)]


def test_synth_reports_blocks(tmp_path):
    from omnidecide.training.synth import generate

    seen = []
    with progress.listening(lambda *a: seen.append(a)):
        generate(tmp_path, n_users=50, seed=1, n_items=60, days=60)
    assert [s[1] for s in seen] == ["users 1-50 of 50", "marketing mix", "done"]
    progress.step("no task, no listener: a no-op")
