"""The web console at `/_tmd/console` (docs/console.md): a page, its script and the vendored
uPlot charting library, fed by one JSON state document the shim assembles from the same
reads as the stats API."""
