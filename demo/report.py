#!/usr/bin/python3
"""demo/report.py: a small HTML report of a database's engagement scores, one self-contained file.

Five charts, drawn with matplotlib (Debian's python3-matplotlib) as SVG embedded in the page:
the distribution of the composite scores, the segments on the R x FM quintile grid, the nested
funnel of one campaign, the model's calibration/holdout check (validate_model) and the gains
chart of its lift by decile (validate_lift).  Reads the
database with psql (the usual PGHOST, PGPORT, PGUSER, PGDATABASE), as demo/run_demo.sh leaves it:
scores refreshed, models fitted.

  /usr/bin/python3 demo/report.py --output report.html --as-of '2026-11-24 00:00+00' \\
      --calibration-end '2026-09-25 00:00+00' [--profile default] [--campaign ID]

Prints the report's path.  Exit status 1, with psql's message, when a query fails.
"""
import argparse
import base64
import csv
import html
import io
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.colors import LogNorm  # noqa: E402

# Reproducible SVG: no creation date, stable element ids.
matplotlib.rcParams["svg.hashsalt"] = "engagement_scoring"
matplotlib.rcParams["font.size"] = 10
BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#7f7f7f"


def query(sql, **variables):
    """Rows (lists of strings) of one query; psql variables are interpolated as :'name'."""
    cmd = ["psql", "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", "-f", "-"]
    for name, value in variables.items():
        cmd += ["-v", "%s=%s" % (name, value)]
    run = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit("report.py: the query failed: %s\n%s" % (run.stderr.strip(), sql))
    rows = list(csv.reader(io.StringIO(run.stdout)))
    return rows[1:]  # without the header


def svg_of(fig):
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return out.getvalue()


def score_distribution(profile):
    scores = [float(r[0]) for r in query(
        "SELECT composite FROM engagement.engagement_scores WHERE profile = :'profile'", profile=profile)]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.hist(scores, bins=[5 * i for i in range(21)], color=BLUE, edgecolor="white")
    scores.sort()
    median = scores[len(scores) // 2] if scores else 0
    ax.axvline(median, color=ORANGE, linestyle="--", label="median %.1f" % median)
    ax.set_xlim(0, 100)
    ax.set_xlabel("composite score (0-100), in buckets of 5 points")
    ax.set_ylabel("contacts")
    ax.set_title("Score distribution: %d contacts" % len(scores))
    ax.legend(frameon=False)
    caption = ("How many contacts score in each 5-point bucket. In psql: "
               "SELECT * FROM engagement.score_histogram('%s', 20);" % profile)
    return svg_of(fig), caption


def segment_grid(profile):
    # The quintiles the segments are made of (docs/model.md, Segments): q(s) = min(5, 1 + floor(s / 20)),
    # FMq = round((Fq + Mq) / 2) with halves rounded up.  Opted-out, undeliverable and new contacts
    # are off the grid (their segment is not the grid's).
    rows = query("""
        SELECT least(5, 1 + floor(recency / 20))::int AS r,
               (least(5, 1 + floor(frequency / 20))::int + least(5, 1 + floor(monetary / 20))::int + 1) / 2 AS fm,
               count(*), mode() WITHIN GROUP (ORDER BY segment)
          FROM engagement.engagement_scores
         WHERE profile = :'profile' AND segment NOT IN ('opted_out', 'undeliverable', 'new')
         GROUP BY 1, 2""", profile=profile)
    off_grid = dict((segment, int(n)) for segment, n in query(
        """SELECT segment, count(*) FROM engagement.engagement_scores
            WHERE profile = :'profile' AND segment IN ('opted_out', 'undeliverable', 'new') GROUP BY 1""", profile=profile))
    counts = [[0] * 5 for _ in range(5)]
    names = [[""] * 5 for _ in range(5)]
    for r, fm, n, segment in rows:
        counts[int(r) - 1][int(fm) - 1] = int(n)
        names[int(r) - 1][int(fm) - 1] = segment
    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    masked = [[c if c > 0 else float("nan") for c in row] for row in counts]
    image = ax.imshow(masked, origin="lower", cmap="Blues", norm=LogNorm(vmin=1, vmax=max(max(counts)) or 1))
    for r in range(5):
        for fm in range(5):
            n = counts[r][fm]
            dark = n > 0 and image.norm(n) > 0.6
            name = names[r][fm].replace("_", "\n", 1).replace("_", " ")   # potential_loyalist: 2 lines
            ax.text(fm, r, "%s\n%s" % (n, name) if n else "0",
                    ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(5), [str(i) for i in range(1, 6)])
    ax.set_yticks(range(5), [str(i) for i in range(1, 6)])
    ax.set_xlabel("FM quintile (frequency and monetary, averaged)")
    ax.set_ylabel("R quintile (recency)")
    ax.set_title("Segments on the R x FM grid: contacts per cell")
    fig.colorbar(image, ax=ax, label="contacts (log scale)")
    caption = ("Each cell: its contacts and their segment. Not on the grid: %d opted out, %d undeliverable, "
               "%d new (known for less than new_contact_days). In psql: SELECT * FROM engagement.readable_segments('%s');"
               % (off_grid.get("opted_out", 0), off_grid.get("undeliverable", 0), off_grid.get("new", 0), profile))
    return svg_of(fig), caption


def funnel(campaign):
    rows = query("SELECT stage, contacts, rate_from_previous, rate_from_delivered FROM engagement.funnel(:'campaign')",
                 campaign=campaign)
    # the profile's chain of stages, then the side rows
    side_stages = ("opted_out", "opted_in", "bounced")
    chain = [r for r in rows if r[0] not in side_stages]
    side = {r[0]: int(r[1]) for r in rows if r[0] in side_stages}
    stages = [r[0] for r in chain]
    contacts = [int(r[1]) for r in chain]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    ax.barh(range(len(stages)), contacts, color=BLUE)
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    top = max(contacts) if contacts and max(contacts) > 0 else 1
    for i, r in enumerate(chain):
        label = "%s" % r[1]
        if i > 0 and r[2]:
            label += "  (%.1f%% of %s)" % (100 * float(r[2]), stages[i - 1])
        ax.text(int(r[1]) + top * 0.01, i, label, va="center", fontsize=9)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("contacts")
    ax.set_title("Funnel of campaign %s (nested: each stage within the previous)" % campaign)
    caption = ("A contact counts at a stage when, in this campaign, it reached that stage and every earlier one; "
               "%d of the delivered opted out, %d opted in, %d bounced. In psql: SELECT * FROM engagement.funnel(%s);"
               % (side.get("opted_out", 0), side.get("opted_in", 0), side.get("bounced", 0), campaign))
    return svg_of(fig), caption


def calibration(profile, calibration_end, holdout_end):
    rows = query("""SELECT x_bucket, contacts, predicted, actual
                      FROM engagement.validate_model(:'cal'::timestamptz, :'hold'::timestamptz, :'profile')""",
                 cal=calibration_end, hold=holdout_end, profile=profile)
    summary = query("""SELECT contacts, predicted_total, actual_total, mean_absolute_error, correlation, horizon_days
                         FROM engagement.validate_model_summary(:'cal'::timestamptz, :'hold'::timestamptz, :'profile')""",
                    cal=calibration_end, hold=holdout_end, profile=profile)[0]
    buckets = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.plot(buckets, [float(r[3]) for r in rows], marker="o", color=BLUE, label="actual")
    ax.plot(buckets, [float(r[2]) for r in rows], marker="s", linestyle="--", color=ORANGE,
            label="predicted (MBG/NBD fitted to the calibration period)")
    ax.set_xlabel("engagement days after the first, in the calibration period")
    ax.set_ylabel("mean engagement days in the holdout")
    ax.set_title("Calibration / holdout: %s days ahead" % round(float(summary[5])))
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    caption = ("Fitted on the events before %s, predicted for the next %s days: %.0f engagement days predicted, "
               "%s happened (%d contacts); per contact, mean absolute error %.3f, correlation %.3f."
               % (calibration_end, round(float(summary[5])), float(summary[1]), summary[2], int(summary[0]),
                  float(summary[3]), float(summary[4])))
    return svg_of(fig), caption


def gains(profile, calibration_end, holdout_end):
    rows = query("""SELECT decile, contacts, actual, cumulative_share, lift
                      FROM engagement.validate_lift(:'cal'::timestamptz, :'hold'::timestamptz, :'profile')""",
                 cal=calibration_end, hold=holdout_end, profile=profile)
    contacts = sum(int(r[1]) for r in rows)
    reached, share = [0.0], [0.0]
    for r in rows:
        reached.append(reached[-1] + int(r[1]) / contacts)
        share.append(float(r[3]) if r[3] is not None else 0.0)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.plot([100 * v for v in reached], [100 * v for v in share], marker="o", color=BLUE,
            label="contacts ranked by expected value at the calibration end")
    ax.plot([0, 100], [0, 100], linestyle="--", color=ORANGE, label="contacts in random order")
    ax.set_xlabel("% of contacts texted, best first")
    ax.set_ylabel("% of the holdout's conversion value")
    ax.set_title("Gains: how deep into the list to text")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, loc="lower right")
    top = rows[0] if rows else None
    caption = ("Ranked on %s, the value converted until %s: the top tenth (%s contacts) brought %.0f%% of it, "
               "a lift of %.2f over texting at random." % (calibration_end, holdout_end, top[1],
                                                           100 * float(top[3] or 0), float(top[4] or 0))
               if top else "No contact to rank.")
    return svg_of(fig), caption


def latest_campaign():
    rows = query("""SELECT campaign_id FROM engagement.engagement_events WHERE campaign_id IS NOT NULL
                     GROUP BY campaign_id ORDER BY max(occurred_at) DESC, campaign_id LIMIT 1""")
    return rows[0][0] if rows else None


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
  body {{ font-family: "DejaVu Sans", sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
  figure {{ margin: 2em 0; }}
  img.chart {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
  figcaption {{ color: #555; font-size: 0.9em; margin-top: 0.4em; }}
  code {{ background: #f4f4f4; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{intro}</p>
{figures}
</body>
</html>
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", required=True)
    ap.add_argument("--as-of", required=True, help="the end of the holdout period (the data's end)")
    ap.add_argument("--calibration-end", required=True)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--campaign", help="default: the latest campaign")
    args = ap.parse_args()

    campaign = args.campaign or latest_campaign()
    charts = [("score-distribution", "Score distribution", score_distribution(args.profile)),
              ("segment-grid", "Segments on the R x FM grid", segment_grid(args.profile))]
    if campaign is not None:
        charts.append(("funnel", "Campaign funnel", funnel(campaign)))
    charts.append(("calibration", "Calibration and holdout",
                   calibration(args.profile, args.calibration_end, args.as_of)))
    charts.append(("gains", "Gains chart of the holdout value by decile", gains(args.profile, args.calibration_end, args.as_of)))
    figures = "\n".join(
        '<figure id="{id}">\n<img class="chart" alt="{alt}" src="data:image/svg+xml;base64,{data}">\n'
        "<figcaption>{caption}</figcaption>\n</figure>".format(
            id=chart_id, alt=html.escape(alt), caption=html.escape(caption),
            data=base64.b64encode(svg.encode()).decode())
        for chart_id, alt, (svg, caption) in charts)
    title = "Engagement scores, profile %s" % args.profile
    intro = ("Scores as stored by the last refresh; models and funnel as of %s. "
             "Charts drawn with matplotlib %s." % (args.as_of, matplotlib.__version__))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(PAGE.format(title=html.escape(title), intro=html.escape(intro), figures=figures))
    print(os.path.abspath(args.output))


if __name__ == "__main__":
    main()
