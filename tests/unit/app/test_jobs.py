"""Background retrain jobs (:mod:`coder_assist.app.jobs`) without Streamlit: one job at a time
per project, its outcome or its error kept on the job, automatic retraining only when due. The
retrain itself is replaced by a stand-in that waits for the test (training is tested in
test_learn.py and through the Model page)."""

from __future__ import annotations

import threading

import pytest

from coder_assist.app import jobs, modelview, training
from coder_assist.core.errors import CoderAssistError
from tests.unit.app.test_modelview import MONEY, make_project

WAIT_S = 30


@pytest.fixture
def project(tmp_path):
    p = make_project(tmp_path)
    yield p
    job = jobs.current_job(p.folder)
    if job is not None and job.thread is not None:
        job.thread.join(WAIT_S)
    p.close()


def stand_in(monkeypatch, outcome):
    """Replace train_project: it blocks until the returned event is set, then returns or raises
    ``outcome``. Records the folder and encoder it was given."""
    release, calls = threading.Event(), []

    def train(project, encoder):
        calls.append((project.folder, encoder))
        assert release.wait(WAIT_S)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(training, "train_project", train)
    return release, calls


def finished(job: jobs.TrainJob) -> jobs.TrainJob:
    job.thread.join(WAIT_S)
    assert not job.running
    return job


def test_one_job_at_a_time_per_project(project, monkeypatch):
    release, calls = stand_in(monkeypatch, 7)
    job = jobs.start_retrain(project, "the encoder")
    assert job is not None and job.running and job.trigger == "button"
    assert jobs.current_job(project.folder) is job and jobs.current_job(str(project.folder)) is job
    assert jobs.start_retrain(project, "the encoder") is None
    assert jobs.start_finetune(project) is None
    release.set()
    finished(job)
    assert (job.version, job.error) == (7, None) and job.seconds is not None
    assert calls == [(project.folder, "the encoder")]  # its own connection to the same folder
    again = jobs.start_retrain(project, "the encoder")  # ended: a new one may start
    assert again is not None and again is not job
    finished(again)


@pytest.mark.parametrize("error, shown", [
    (CoderAssistError("no decisions to learn from"), "no decisions to learn from"),
    (ValueError("bad shape"), "ValueError: bad shape"),
])
def test_errors_stay_on_the_job(project, monkeypatch, error, shown):
    release, _ = stand_in(monkeypatch, error)
    release.set()
    job = finished(jobs.start_retrain(project, None))
    assert job.version is None and job.error == shown


def test_automatic_retrain_only_when_due(project, monkeypatch):
    release, calls = stand_in(monkeypatch, 2)
    release.set()
    loaded = []

    def encoder_for(model):
        loaded.append(model)
        return "auto encoder"

    segment = int(project.segments().iloc[0]["id"])
    project.record_decision(segment, MONEY, "accept", "Ann")
    assert jobs.maybe_auto_retrain(project, encoder_for) is None  # off
    modelview.set_auto_retrain_every(project, 2)
    assert jobs.maybe_auto_retrain(project, encoder_for) is None  # 1 of 2
    assert loaded == []  # the model is loaded only when a retrain is due
    project.record_decision(int(project.segments().iloc[1]["id"]), MONEY, "accept", "Ann")
    job = jobs.maybe_auto_retrain(project, encoder_for)
    assert job is not None and job.trigger == "auto" and job.n_decisions == 2
    assert loaded == [project.meta("model")]
    finished(job)
    assert calls == [(project.folder, "auto encoder")] and job.version == 2


def test_a_model_that_does_not_load_raises_to_the_caller(project):
    modelview.set_auto_retrain_every(project, 1)
    project.record_decision(int(project.segments().iloc[0]["id"]), MONEY, "accept", "Ann")

    def broken(model):
        raise OSError("model files missing")

    with pytest.raises(OSError, match="model files missing"):
        jobs.maybe_auto_retrain(project, broken)
    assert jobs.current_job(project.folder) is None
