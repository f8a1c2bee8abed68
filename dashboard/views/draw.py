"""Draw: ask a trained network what a picture shows, and see how each layer's goodness voted.

A digit (MNIST) model offers the drawing canvas and a picture upload; a Fashion-MNIST model, whose classes
are garments one cannot draw well, offers the upload. Predictions read by class name ("7", "Ankle boot").
"""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st
from PIL import Image

from dashboard import charts
from dashboard.api_session import get_client, show_api_error
from dashboard.client import ApiError
from dashboard.models import Prediction, Run
from dashboard.navigation import DRAW_RUN_ID, RUNS_PAGE

CANVAS_SIZE = 280  # ten screen pixels per MNIST pixel
STROKE_WIDTH = 22
SEEN_IMAGE_SIZE = 168  # the 28x28 input, enlarged without smoothing
PREDICTIONS_KEPT = 32
# This page's own session keys.
PICTURE_UPLOAD = "picture_upload"  # the file uploader's key
CANVAS_VERSION = "canvas_version"  # part of the canvas's key: a new version is a fresh, empty canvas
PREDICTIONS = "predictions"  # the API's answers by (run, model step, image hash), so reruns reuse them


def pick_model() -> Run | None:
    try:
        runs = [run for run in get_client().list_runs(limit=200).runs if run.has_model]
    except ApiError as error:
        show_api_error(error, "list the runs")
        return None
    if not runs:
        st.info(
            "No trained model yet. Start a run on the **Runs** page (the **quick** preset takes about a "
            "minute); its model appears here after its first epoch.",
            icon=":material/info:",
        )
        st.page_link(RUNS_PAGE, label="Go to Runs", icon=":material/view_list:")
        return None
    by_id = {run.id: run for run in runs}
    ids = list(by_id)
    wanted = st.session_state.get(DRAW_RUN_ID)
    if wanted not in by_id:
        finished = [run.id for run in runs if run.status == "succeeded"]
        wanted = finished[0] if finished else ids[0]

    def describe(run_id: str) -> str:
        run = by_id[run_id]
        error = run.current_error_scan
        quality = f" · error {error * 100:.2f}%" if error is not None else ""
        checkpoint = "" if run.status == "succeeded" else " · latest checkpoint"
        return f"{run.label}{quality}{checkpoint}"

    run_id = st.selectbox("Model", ids, index=ids.index(wanted), format_func=describe)
    st.session_state[DRAW_RUN_ID] = run_id
    return by_id[run_id]


def drawn_image() -> bytes | None:
    """The canvas as PNG bytes, or None while it is empty."""
    from streamlit_drawable_canvas import st_canvas  # a custom component: imported by this page only

    version = st.session_state.setdefault(CANVAS_VERSION, 0)
    result = st_canvas(
        stroke_width=STROKE_WIDTH,
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=CANVAS_SIZE,
        width=CANVAS_SIZE,
        drawing_mode="freedraw",
        return_image_data=True,
        key=f"digit_canvas_{version}",
    )
    if st.button("Clear", icon=":material/ink_eraser:", key="clear_canvas"):
        st.session_state[CANVAS_VERSION] = version + 1  # a new key gives a fresh, empty canvas
        st.rerun()
    st.caption("Draw one digit, large and centred, as on a form. The toolbar above the canvas can undo.")
    objects = (result.json_data or {}).get("objects") or []
    return result.image_bytes if objects else None


def uploaded_image(run: Run) -> tuple[bytes, str, str] | None:
    what = "one digit" if run.is_digits else f"one {run.dataset_name} item (a garment, a shoe or a bag)"
    upload = st.file_uploader(
        f"A picture of {what} (PNG or JPEG, any size; dark on light works too)",
        type=["png", "jpg", "jpeg"],
        key=PICTURE_UPLOAD,
    )
    if upload is None:
        return None
    return upload.getvalue(), upload.name, upload.type or "image/png"


def predict(run: Run, data: bytes, filename: str, content_type: str) -> Prediction | None:
    """Ask the API, once per (model state, image): reruns reuse the answer."""
    key = (run.id, run.step, hashlib.sha256(data).hexdigest())
    cache: dict = st.session_state.setdefault(PREDICTIONS, {})
    if key not in cache:
        try:
            cache[key] = get_client().predict_file(run.id, data, filename, content_type)
        except ApiError as error:
            if error.status_code in (400, 422) and "ink" in error.message.lower():
                what_to_do = (
                    "Draw a bigger digit." if run.is_digits else "Upload a picture whose subject stands out."
                )
                st.info(f"Nothing to read yet: {error.message}. {what_to_do}", icon=":material/gesture:")
            else:
                show_api_error(error, "predict")
            return None
        while len(cache) > PREDICTIONS_KEPT:
            cache.pop(next(iter(cache)))
    return cache[key]


def seen_image(pixels: list[list[float]]) -> Image.Image:
    array = (np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(array, mode="L").resize(
        (SEEN_IMAGE_SIZE, SEEN_IMAGE_SIZE), Image.Resampling.NEAREST
    )


def show_prediction(prediction: Prediction) -> None:
    label_column, image_column = st.columns([1, 1])
    with label_column:
        st.metric(
            "Predicted digit" if prediction.is_digits else "Predicted class",
            prediction.scan_name,
            border=True,
            help="The label scan: highest goodness",
        )
        if prediction.head_probs:
            head_label = prediction.head_label
            agreement = "agrees" if head_label == prediction.scan_label else "disagrees"
            confidence = prediction.head_probs[head_label] * 100
            st.caption(f"Softmax head: **{prediction.head_name}** ({confidence:.1f}%), {agreement}.")
        if prediction.model_step is not None:
            st.caption(f"Model from training step {prediction.model_step:,}.")
    with image_column:
        if prediction.image:
            st.image(seen_image(prediction.image), caption="What the model sees (28x28)")
    st.markdown("**Goodness for each label, by layer**")
    st.altair_chart(
        charts.goodness_by_label_chart(
            prediction.goodness, prediction.scan_label, prediction.scan_layers, prediction.class_names
        ),
        width="stretch",
        height=320,
        key="chart_goodness_by_label",
    )
    if prediction.scan_layers:
        st.caption(
            "The scan sums layers "
            + ", ".join(str(layer) for layer in prediction.scan_layers)
            + "; faded bars "
            "are layers it leaves out."
        )
    if prediction.head_probs:
        st.markdown("**Softmax head probabilities**")
        st.altair_chart(
            charts.probabilities_chart(prediction.head_probs, prediction.class_names),
            width="stretch",
            height=180,
            key="chart_probs",
        )


# --- layout ----------------------------------------------------------------------------------------

st.title("Draw or upload")
st.caption(
    "The network scores the picture under each of the ten labels; the label whose goodness is highest wins "
    "(the label scan). The softmax head gives a second opinion."
)
run = pick_model()
if run is not None:
    input_column, output_column = st.columns([5, 6], gap="large")
    with input_column:
        # Garments cannot be drawn well: a Fashion-MNIST model takes a picture only.
        mode = "Upload" if not run.is_digits else st.segmented_control(
            "Input", ["Draw", "Upload"], default="Draw", key="draw_mode", label_visibility="collapsed"
        )  # fmt: skip
        image: tuple[bytes, str, str] | None
        if mode == "Upload":
            image = uploaded_image(run)
            hint = (
                "Upload an image of a single digit to see what the network makes of it."
                if run.is_digits
                else f"Upload a picture of one {run.dataset_name} item to see how the network classifies it."
            )
        else:
            drawn = drawn_image()
            image = (drawn, "canvas.png", "image/png") if drawn else None
            hint = "Draw a digit on the black canvas with your mouse or finger; the prediction appears here."
    with output_column:
        if image is None:
            st.info(hint, icon=":material/gesture:")
        elif (prediction := predict(run, *image)) is not None:
            show_prediction(prediction)
