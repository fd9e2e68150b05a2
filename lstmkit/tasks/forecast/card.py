"""What the model card of a forecast model says of the task (a TaskCard)."""

from lstmkit.tasks.base import TaskCard

CARD = TaskCard(
    "time-series forecaster",
    "time-series-forecasting",
    "The M4 competition's series of one frequency (or the 40-series hourly sample bundled "
    "with lstmkit); the last horizon of every series held out for validation.",
    """@article{makridakis2020m4,
  title = {The M4 Competition: 100,000 time series and 61 forecasting methods},
  author = {Makridakis, Spyros and Spiliotis, Evangelos and Assimakopoulos, Vassilios},
  journal = {International Journal of Forecasting}, volume = {36}, number = {1},
  pages = {54--74}, year = {2020}
}""",
    "Point and quantile forecasts of series like the ones it was trained on, scored as "
    "M4 did (sMAPE, MASE, OWA).",
    "Forecasts only its trained horizon and frequency; series unlike M4's (structural "
    "breaks, other seasonalities, very short histories padded on the left) are forecast "
    "less well; intervals are learned quantiles, not guarantees.",
    ("owa", "smape", "mase", "n"),
    ("m4",),
)
