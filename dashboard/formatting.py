"""How numbers and statuses read on the pages: durations, percentages, status badges."""

from __future__ import annotations

STATUS_STYLE = {
    "queued": ("gray", ":material/schedule:"),
    "running": ("blue", ":material/sync:"),
    "succeeded": ("green", ":material/check_circle:"),
    "failed": ("red", ":material/error:"),
    "cancelled": ("orange", ":material/cancel:"),
}
# The same colours as text, for table cells (Streamlit's badge palette).
STATUS_COLOURS = {
    "queued": "#6c757d",
    "running": "#1c7ed6",
    "succeeded": "#2b8a3e",
    "failed": "#c92a2a",
    "cancelled": "#e8590c",
}


def format_duration(seconds: float | None) -> str:
    """'45s', '3m 05s', '2h 07m'; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_percent(fraction: float | None, digits: int = 2) -> str:
    return "—" if fraction is None else f"{fraction * 100:.{digits}f}%"


def format_rate(samples_per_s: float | None) -> str:
    """'850', '39.3k', '1.2M': short enough for a metric card a sixth of the page wide (its label says
    the unit)."""
    if samples_per_s is None:
        return "—"
    if samples_per_s >= 1e6:
        return f"{samples_per_s / 1e6:.1f}M"
    return f"{samples_per_s / 1000:.1f}k" if samples_per_s >= 10_000 else f"{samples_per_s:,.0f}"


def status_badge(status: str) -> str:
    """Streamlit markdown for a coloured status badge."""
    colour, icon = STATUS_STYLE.get(status, ("gray", ":material/help:"))
    return f":{colour}-badge[{icon} {status}]"


def format_mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """An error over seeds: '1.23% ± 0.05' (mean and std in percent), '1.23%' for one run, '—' for none."""
    if mean is None:
        return "—"
    if std is None:
        return format_percent(mean, digits)
    return f"{mean * 100:.{digits}f}% ± {std * 100:.{digits}f}"
