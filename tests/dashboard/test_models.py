"""The dashboard's run model: duration, ETA and the error it reports."""

from __future__ import annotations

from dashboard.formatting import format_duration, format_percent, format_rate
from dashboard.models import ExperimentProgress, Prediction, Run, RunOutcome, SettingResult
from dashboard.run_table import runs_frame


def make_run(**fields) -> Run:
    return Run(
        **({"id": "r1", "status": "running", "config": {"hidden": [1000, 1000, 1000], "epochs": 10}} | fields)
    )


def test_eta_extrapolates_the_pace_so_far():
    run = make_run(started_at=1000.0, progress=0.25)
    assert run.duration_s(now=1100.0) == 100.0
    assert run.eta_s(now=1100.0) == 300.0


def test_no_eta_before_progress_or_after_the_end():
    assert make_run(started_at=1000.0, progress=0.0).eta_s(now=1100.0) is None
    done = make_run(status="succeeded", started_at=1000.0, finished_at=1500.0, progress=1.0)
    assert done.eta_s(now=9999.0) is None
    assert done.duration_s(now=9999.0) == 500.0


def test_the_test_error_replaces_the_validation_error_once_known():
    run = make_run(val_error_scan=0.03, val_error_softmax=0.04)
    assert run.current_error_scan == 0.03
    run = make_run(val_error_scan=0.03, test_error_scan=0.02, test_error_softmax=0.025)
    assert (run.current_error_scan, run.current_error_softmax) == (0.02, 0.025)


def test_architecture_names_equal_and_mixed_widths():
    assert make_run().architecture == "3x1000"
    assert make_run(config={"hidden": [800, 400]}).architecture == "800-400"


def test_runs_frame_has_one_readable_row_per_run():
    frame = runs_frame(
        [
            make_run(started_at=1000.0, progress=0.5, epoch=5, device="cpu"),
            make_run(id="r2", status="queued"),
        ],
        now=1060.0,
    )
    assert frame["run"].tolist() == ["r1", "r2"]
    first = frame.iloc[0]
    assert (first["epoch"], first["eta"], first["duration"], first["device"]) == (
        "5/10",
        "1m 00s",
        "1m 00s",
        "cpu",
    )
    assert first["status"] == "running"
    assert frame.iloc[1]["duration"] == "" and frame.iloc[1]["eta"] == ""


def test_formatting():
    assert [format_duration(s) for s in (None, 5, 65, 7260)] == ["—", "5s", "1m 05s", "2h 01m"]
    assert format_percent(0.0145) == "1.45%"
    assert [format_rate(r) for r in (None, 850.4, 39267.0, 2.5e6)] == ["—", "850", "39.3k", "2.5M"]


def test_the_run_table_lists_each_runs_tags():
    frame = runs_frame([make_run(tags=["base", "lr=1e-3"]), make_run(id="r2")])
    assert frame["tags"].tolist() == ["base, lr=1e-3", ""]


def test_a_run_names_its_experiment_and_setting_and_the_table_lists_them():
    assert make_run().experiment_label == ""
    assert make_run(experiment="e1").experiment_label == "e1"
    run = make_run(experiment="e1", setting=0)
    assert run.experiment_label == "e1 #0"
    assert runs_frame([run, make_run(id="r2")])["experiment"].tolist() == ["e1 #0", ""]


def test_experiment_progress_is_the_share_of_planned_settings_finished():
    assert ExperimentProgress(settings_planned=4, settings_finished=1).fraction == 0.25
    assert ExperimentProgress(settings_planned=0).fraction == 0.0
    assert ExperimentProgress(settings_planned=2, settings_finished=3).fraction == 1.0


def test_a_settings_runs_finished_count_pruned_failed_and_cancelled_but_not_queued_or_running():
    statuses = ["succeeded", "pruned", "failed", "cancelled", "queued", "running"]
    setting = SettingResult(
        trial=0,
        params={},
        status="running",
        runs=[RunOutcome(seed=i, status=s) for i, s in enumerate(statuses)],
    )
    assert setting.runs_finished == 4


def test_a_runs_data_set_is_in_its_label_and_the_table_and_mnist_without_one():
    fashion = make_run(id="r2", config={"hidden": [50], "dataset": "fashion-mnist"})
    digits = make_run(config={"hidden": [50], "dataset": "mnist"})
    older = make_run(id="r3")  # a config from before Fashion-MNIST: no data set named
    assert (fashion.dataset_name, digits.dataset_name, older.dataset_name) == (
        "Fashion-MNIST",
        "MNIST",
        "MNIST",
    )
    assert not fashion.is_digits and digits.is_digits and older.is_digits
    assert "Fashion-MNIST" in fashion.label and "MNIST" not in digits.label
    assert runs_frame([digits, fashion, older])["dataset"].tolist() == ["MNIST", "Fashion-MNIST", "MNIST"]


PREDICTION = {"scan_label": 9, "head_label": 7, "goodness": [[1.0]] * 10, "head_probs": [0.1] * 10}


def test_a_prediction_names_its_classes_and_an_older_apis_answer_reads_as_digits():
    garments = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"]  # fmt: skip
    named = {
        "dataset": "fashion-mnist",
        "classes": garments,
        "scan_class": "Ankle boot",
        "head_class": "Sneaker",
    }
    fashion = Prediction.model_validate(PREDICTION | named)
    assert (fashion.scan_name, fashion.head_name, fashion.class_names) == ("Ankle boot", "Sneaker", garments)
    assert not fashion.is_digits
    older = Prediction.model_validate(PREDICTION)
    assert (older.scan_name, older.head_name, older.is_digits) == ("9", "7", True)
    assert older.class_names == [str(digit) for digit in range(10)]
