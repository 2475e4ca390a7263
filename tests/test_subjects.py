import pytest

from ossabus.contracts import subjects


def test_run_event_subjects_select_one_run_or_one_thread():
    subject = subjects.run_event("thread_a1", "run_b2", "thread.run.created")
    assert subject == "ossa.events.thread_a1.run_b2.thread.run.created"
    assert subjects.run_events("run_b2") == "ossa.events.*.run_b2.>"
    assert subjects.thread_events("thread_a1") == "ossa.events.thread_a1.>"


@pytest.mark.parametrize("bad", ["a.b", "a*", ">", "a b", "", "x\n"])
def test_ids_that_would_widen_a_subscription_are_refused(bad):
    with pytest.raises(subjects.InvalidSubjectToken):
        subjects.task(bad)


def test_every_fixed_subject_lives_under_the_ossa_prefix():
    fixed = subjects.all_subjects()
    assert "REGISTRY_GET" in fixed
    assert "TASKS_ALL" in fixed
    assert all(value.startswith("ossa.") for value in fixed.values())
