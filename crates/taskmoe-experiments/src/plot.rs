//! SVG plots of the reports: curves of a metric with error bars ([`line_chart`], plotters'
//! SVG backend) and forest plots of paired contrasts ([`forest_plot`], written directly as SVG
//! text).

use crate::error::{ExperimentError, Result};
use plotters::prelude::*;

use crate::stats::Summary;

/// One line of a [`line_chart`]: a name and one summary per x position.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// One value per x label (mean ± standard deviation over seeds); NaN means no point.
    pub points: Vec<Summary>,
}

/// A line chart over categorical x positions (`x_labels`, evenly spaced: low-resource sizes,
/// shots, relatedness values), one line per series with ± one standard deviation error bars,
/// as an SVG document.
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x_labels: &[String],
    series: &[Series],
) -> Result<String> {
    let mut svg = String::new();
    let finite: Vec<f64> = series
        .iter()
        .flat_map(|s| &s.points)
        .filter(|p| p.mean.is_finite())
        .flat_map(|p| [p.mean - p.std, p.mean + p.std])
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = 0.08 * (hi - lo);
        (lo - pad, hi + pad)
    } else {
        (0.0, 1.0)
    };
    let n = x_labels.len().max(1);
    {
        let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| {
            ExperimentError::Invalid(format!("plotting `{title}`: {e:?}"))
        };
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)
            .map_err(e)?;
        let labels = x_labels.to_vec();
        let format_x = move |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&format_x)
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(e)?;
        let count = series.len().max(1) as f64;
        for (i, s) in series.iter().enumerate() {
            let color = color(i);
            // Spread the series a little along x so error bars do not hide each other.
            let shift = (i as f64 - (count - 1.0) / 2.0) * 0.04;
            let points: Vec<(f64, &Summary)> = s
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| p.mean.is_finite())
                .map(|(j, p)| (j as f64 + shift, p))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, p)| (*x, p.mean)),
                    color.stroke_width(2),
                ))
                .map_err(e)?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(points.iter().map(|(x, p)| {
                    ErrorBar::new_vertical(
                        *x,
                        p.mean - p.std,
                        p.mean,
                        p.mean + p.std,
                        color.filled(),
                        6,
                    )
                }))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// One contrast of a [`forest_plot`]: an estimate with its interval, under a group heading.
#[derive(Clone, Debug, PartialEq)]
pub struct ForestRow {
    /// The heading the row is listed under; a heading is drawn where it changes from the row
    /// before.
    pub group: String,
    /// The row's label (a task, an arm, a claim).
    pub label: String,
    /// The point estimate (a difference of means, say); NaN or infinite draws `n/a`.
    pub estimate: f64,
    /// The interval's lower end; NaN or infinite draws `n/a`.
    pub low: f64,
    /// The interval's upper end; NaN or infinite draws `n/a`.
    pub high: f64,
    /// Text at the right end of the row (a verdict such as `better` or `equivalent`).
    pub verdict: Option<String>,
}

impl ForestRow {
    /// Whether the estimate and both ends are finite (the row gets an interval).
    fn is_finite(&self) -> bool {
        self.estimate.is_finite() && self.low.is_finite() && self.high.is_finite()
    }
}

/// A forest plot of `rows` as an SVG document: one row per contrast with its label on the
/// left (under a heading wherever the group changes), a horizontal line from `low` to `high`
/// with a marker at the estimate, the numbers and the verdict on the right; a dashed vertical
/// line at zero, a shaded band over `-margin..margin` when a positive finite `margin` (an
/// equivalence margin) is given, and an x axis with valued ticks described by `x_desc`.
///
/// The x range covers zero, the margin band and every finite interval and estimate. A row with
/// a non-finite value is listed with its label and `n/a`, no interval.
///
/// Written directly as SVG text (like `taskmoe_eval::routing::heatmap_svg`) because plotters'
/// text layout needs system fonts; every text is escaped.
pub fn forest_plot(title: &str, x_desc: &str, rows: &[ForestRow], margin: Option<f64>) -> String {
    const ROW: f64 = 22.0; // height of a row slot
    const CHAR: f64 = 6.6; // text width per character at 12 px (an estimate: no font metrics)
    const PLOT: f64 = 360.0; // width of the interval area
    const TOP: f64 = 52.0; // the first row slot's top
    let margin = margin.filter(|m| m.is_finite() && *m > 0.0);
    let numbers: Vec<String> = rows
        .iter()
        .map(|r| match r.is_finite() {
            true => format!("{:.3} [{:.3}, {:.3}]", r.estimate, r.low, r.high),
            false => String::new(),
        })
        .collect();

    // Columns: label, interval area, numbers, verdict.
    let widest = |texts: &mut dyn Iterator<Item = &str>| {
        texts.map(|t| t.chars().count()).max().unwrap_or(0) as f64 * CHAR
    };
    let left = (widest(&mut rows.iter().map(|r| r.label.as_str())) + 22.0)
        .max(1.1 * widest(&mut rows.iter().map(|r| r.group.as_str())) + 10.0) // bold
        .max(100.0)
        + 16.0;
    let numbers_x = left + PLOT + 16.0;
    let numbers_header = "estimate [low, high]";
    let verdict_x =
        numbers_x + widest(&mut numbers.iter().map(String::as_str).chain([numbers_header])) + 16.0;
    let mut verdicts = rows.iter().filter_map(|r| r.verdict.as_deref());
    let width =
        (verdict_x + widest(&mut verdicts) + 16.0).max(20.0 + 7.5 * title.chars().count() as f64);

    // Row slots: a group heading takes one, each row one.
    let mut slots = Vec::with_capacity(rows.len() * 2);
    for (i, row) in rows.iter().enumerate() {
        if i == 0 || rows[i - 1].group != row.group {
            slots.push(Slot::Heading(&row.group));
        }
        slots.push(Slot::Row(row, i));
    }
    let axis_y = TOP + ROW * slots.len() as f64 + 6.0;
    let height = axis_y + if margin.is_some() { 62.0 } else { 46.0 };

    // The x scale.
    let span = rows
        .iter()
        .filter(|r| r.is_finite())
        .flat_map(|r| [r.low, r.high, r.estimate])
        .chain([0.0])
        .chain(margin.into_iter().flat_map(|m| [-m, m]));
    let (lo, hi) = span.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let ticks = Ticks::covering(lo, hi);
    let x = |v: f64| left + PLOT * (v - ticks.lo) / (ticks.hi - ticks.lo);

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">{}</text>\n\
         <text x=\"{numbers_x:.1}\" y=\"{:.1}\" fill=\"#555\">{numbers_header}</text>\n",
        escape(title),
        TOP - 8.0,
    );
    if rows.iter().any(|r| r.verdict.is_some()) {
        svg += &format!(
            "<text x=\"{verdict_x:.1}\" y=\"{:.1}\" fill=\"#555\">verdict</text>\n",
            TOP - 8.0
        );
    }
    if let Some(m) = margin {
        svg += &format!(
            "<rect class=\"margin\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"#dbe9f6\"/>\n",
            x(-m),
            TOP - 4.0,
            x(m) - x(-m),
            axis_y - TOP + 4.0
        );
    }
    svg += &format!(
        "<line class=\"zero\" x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" \
         stroke=\"#555\" stroke-dasharray=\"4 3\"/>\n",
        x(0.0),
        TOP - 4.0,
        axis_y
    );
    for (k, slot) in slots.iter().enumerate() {
        let y = TOP + ROW * (k as f64 + 0.5); // the slot's middle
        match *slot {
            Slot::Heading(group) => {
                svg += &format!(
                    "<text class=\"group\" x=\"10\" y=\"{:.1}\" font-weight=\"bold\">{}</text>\n",
                    y + 4.0,
                    escape(group)
                );
            }
            Slot::Row(row, i) => {
                svg += &format!(
                    "<text x=\"22\" y=\"{:.1}\">{}</text>\n",
                    y + 4.0,
                    escape(&row.label)
                );
                if row.is_finite() {
                    svg += &format!(
                        "<line class=\"interval\" x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" \
                         y2=\"{y:.1}\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n\
                         <circle class=\"estimate\" cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" \
                         fill=\"#1f77b4\"/>\n\
                         <text x=\"{numbers_x:.1}\" y=\"{:.1}\">{}</text>\n",
                        x(row.low),
                        x(row.high),
                        x(row.estimate),
                        y + 4.0,
                        numbers[i]
                    );
                } else {
                    svg += &format!(
                        "<text class=\"na\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                         fill=\"#777\">n/a</text>\n",
                        left + PLOT / 2.0,
                        y + 4.0
                    );
                }
                if let Some(verdict) = &row.verdict {
                    svg += &format!(
                        "<text x=\"{verdict_x:.1}\" y=\"{:.1}\">{}</text>\n",
                        y + 4.0,
                        escape(verdict)
                    );
                }
            }
        }
    }

    // The x axis, its ticks and description.
    svg += &format!(
        "<line class=\"axis\" x1=\"{left:.1}\" y1=\"{axis_y:.1}\" x2=\"{:.1}\" y2=\"{axis_y:.1}\" \
         stroke=\"black\"/>\n",
        left + PLOT
    );
    for &t in &ticks.values {
        svg += &format!(
            "<line class=\"tick\" x1=\"{0:.1}\" y1=\"{axis_y:.1}\" x2=\"{0:.1}\" y2=\"{1:.1}\" \
             stroke=\"black\"/>\n\
             <text class=\"tick-label\" x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\" \
             font-size=\"11\">{3}</text>\n",
            x(t),
            axis_y + 5.0,
            axis_y + 17.0,
            ticks.label(t)
        );
    }
    svg += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        left + PLOT / 2.0,
        axis_y + 34.0,
        escape(x_desc)
    );
    if let Some(m) = margin {
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" \
             fill=\"#555\">shaded: equivalence margin \u{b1}{m}</text>\n",
            left + PLOT / 2.0,
            axis_y + 50.0
        );
    }
    svg + "</svg>\n"
}

/// A vertical position of a [`forest_plot`]: a group heading or a row (with its index).
enum Slot<'a> {
    Heading(&'a str),
    Row(&'a ForestRow, usize),
}

/// Axis ticks at a round step (1, 2 or 5 times a power of ten), about five of them.
struct Ticks {
    /// The axis's ends, on ticks.
    lo: f64,
    hi: f64,
    /// The tick values from `lo` to `hi`.
    values: Vec<f64>,
    /// Decimals a tick label needs at this step.
    decimals: usize,
}

impl Ticks {
    /// Ticks whose range covers `lo..=hi` (which is widened to a unit when it is empty or
    /// not finite).
    fn covering(lo: f64, hi: f64) -> Ticks {
        let (lo, hi) = match lo.is_finite() && hi.is_finite() {
            true if hi - lo > 1e-12 => (lo, hi),
            true => (lo - 0.5, hi + 0.5),
            false => (-1.0, 1.0),
        };
        let raw = (hi - lo) / 5.0;
        let power = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|f| f * power)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * power);
        let first = (lo / step).floor();
        let last = (hi / step).ceil();
        let values: Vec<f64> = (0..=(last - first) as i64)
            .map(|k| {
                let v = (first + k as f64) * step;
                if v.abs() < step * 1e-9 {
                    0.0
                } else {
                    v
                }
            })
            .collect();
        Ticks {
            lo: first * step,
            hi: last * step,
            values,
            decimals: (-step.log10().floor()).max(0.0) as usize,
        }
    }

    /// The text of tick `v`.
    fn label(&self, v: f64) -> String {
        format!("{v:.*}", self.decimals)
    }
}

/// `s` with `&`, `<` and `>` escaped for SVG text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Tableau 10 palette: distinct on white, including for common colour blindness.
fn color(i: usize) -> RGBAColor {
    const TABLEAU: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TABLEAU[i % TABLEAU.len()];
    RGBColor(r, g, b).to_rgba()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_every_label() {
        let s = |m: f64| Summary {
            mean: m,
            std: 0.01,
            n: 3,
        };
        let svg = line_chart(
            "accuracy against size",
            "examples",
            "accuracy",
            &["32".into(), "128".into()],
            &[
                Series {
                    name: "dense".into(),
                    points: vec![s(0.6), s(0.7)],
                },
                Series {
                    name: "task-moe".into(),
                    points: vec![s(0.65), Summary::of(&[])],
                },
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
        for text in ["accuracy against size", "dense", "task-moe", "128"] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    fn row(group: &str, label: &str, estimate: f64, low: f64, high: f64) -> ForestRow {
        ForestRow {
            group: group.into(),
            label: label.into(),
            estimate,
            low,
            high,
            verdict: None,
        }
    }

    /// The value of attribute `attr` of every element of class `class`, in document order.
    fn attrs(svg: &str, class: &str, attr: &str) -> Vec<f64> {
        svg.lines()
            .filter(|l| l.contains(&format!("class=\"{class}\"")))
            .map(|l| {
                let start = l.find(&format!(" {attr}=\"")).expect("attribute") + attr.len() + 3;
                let end = start + l[start..].find('"').unwrap();
                l[start..end].parse().unwrap()
            })
            .collect()
    }

    fn contrasts() -> Vec<ForestRow> {
        vec![
            row("living", "hi", -0.02, -0.05, 0.01),
            row("living", "lo", 0.04, 0.01, 0.07),
            row("physical", "hi", 0.15, 0.08, 0.31),
            row("physical", "lo", -0.3, -0.42, -0.18),
        ]
    }

    #[test]
    fn a_forest_has_one_interval_and_marker_per_row_and_a_heading_per_group_run() {
        let mut rows = contrasts();
        rows.push(row("living", "again", 0.0, -0.01, 0.01));
        rows[1].verdict = Some("better".into());
        let svg = forest_plot("task-MoE minus dense", "accuracy difference", &rows, None);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<line class=\"interval\"").count(), rows.len());
        assert_eq!(
            svg.matches("<circle class=\"estimate\"").count(),
            rows.len()
        );
        // living, physical, living again: three headings.
        assert_eq!(svg.matches("class=\"group\"").count(), 3);
        for text in [
            "task-MoE minus dense",
            "accuracy difference",
            "better",
            "verdict",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Each interval runs left to right and holds its marker.
        let (x1, x2) = (attrs(&svg, "interval", "x1"), attrs(&svg, "interval", "x2"));
        for ((a, b), m) in x1.iter().zip(&x2).zip(attrs(&svg, "estimate", "cx")) {
            assert!(*a <= m && m <= *b, "{a} {m} {b}");
        }
    }

    #[test]
    fn labels_and_texts_are_escaped() {
        let mut rows = vec![row("a & b", "x<y & z", 0.1, 0.0, 0.2)];
        rows[0].verdict = Some("<better>".into());
        let svg = forest_plot("1 < 2 & 3", "Δ <acc>", &rows, None);
        for raw in ["x<y", "a & b", "<better>", "1 < 2", "<acc>"] {
            assert!(!svg.contains(raw), "unescaped {raw}");
        }
        for escaped in [
            "x&lt;y &amp; z",
            "a &amp; b",
            "&lt;better&gt;",
            "1 &lt; 2 &amp; 3",
            "Δ &lt;acc&gt;",
        ] {
            assert!(svg.contains(escaped), "missing {escaped}");
        }
    }

    #[test]
    fn zero_lies_between_a_negative_and_a_positive_estimate() {
        let svg = forest_plot("t", "d", &contrasts(), None);
        let zero = attrs(&svg, "zero", "x1");
        assert_eq!(zero.len(), 1);
        let marks = attrs(&svg, "estimate", "cx");
        // Rows 0 and 3 are negative, 1 and 2 positive.
        for neg in [marks[0], marks[3]] {
            for pos in [marks[1], marks[2]] {
                assert!(neg < zero[0] && zero[0] < pos, "{neg} {} {pos}", zero[0]);
            }
        }
        // Estimates are placed in order of value: -0.3 leftmost, 0.15 rightmost.
        assert!(marks[3] < marks[0] && marks[1] < marks[2]);
    }

    #[test]
    fn the_axis_covers_every_interval_and_the_margin() {
        let rows = contrasts();
        for margin in [None, Some(0.5)] {
            let svg = forest_plot("t", "d", &rows, margin);
            let (lo, hi) = (attrs(&svg, "axis", "x1")[0], attrs(&svg, "axis", "x2")[0]);
            let ends = attrs(&svg, "interval", "x1")
                .into_iter()
                .chain(attrs(&svg, "interval", "x2"));
            for v in ends.chain(attrs(&svg, "zero", "x1")) {
                assert!(lo <= v && v <= hi, "{v} outside {lo}..{hi}");
            }
            let ticks = attrs(&svg, "tick", "x1");
            assert!(ticks.len() >= 3, "{ticks:?}");
            assert_eq!((ticks[0], ticks[ticks.len() - 1]), (lo, hi));
            if let Some(m) = margin {
                let x = attrs(&svg, "margin", "x")[0];
                let w = attrs(&svg, "margin", "width")[0];
                assert!(
                    lo <= x && x + w <= hi + 0.1,
                    "band {x}+{w} outside {lo}..{hi}"
                );
                // The margin (0.5) is wider than every interval: the band holds them all.
                let x1 = attrs(&svg, "interval", "x1");
                assert!(x1.iter().all(|&a| a >= x), "{m}");
            }
        }
        // The tick labels are the values at their ticks, and reach past the margin.
        let svg = forest_plot("t", "d", &rows, Some(0.5));
        let labels: Vec<f64> = svg
            .lines()
            .filter(|l| l.contains("class=\"tick-label\""))
            .map(|l| {
                l[l.find('>').unwrap() + 1..l.find("</").unwrap()]
                    .parse()
                    .unwrap()
            })
            .collect();
        let ticks = attrs(&svg, "tick", "x1");
        let zero = attrs(&svg, "zero", "x1")[0];
        assert_eq!(labels.len(), ticks.len());
        assert!(
            labels[0] <= -0.5 && labels[labels.len() - 1] >= 0.5,
            "{labels:?}"
        );
        let at_zero = labels.iter().position(|&v| v == 0.0).expect("a tick at 0");
        assert_eq!(ticks[at_zero], zero);
    }

    #[test]
    fn the_margin_band_is_drawn_only_when_asked() {
        let rows = contrasts();
        let band = |margin| {
            forest_plot("t", "d", &rows, margin)
                .matches("class=\"margin\"")
                .count()
        };
        assert_eq!(band(None), 0);
        assert_eq!(band(Some(0.02)), 1);
        // A margin that is no margin draws nothing.
        assert_eq!(band(Some(0.0)), 0);
        assert_eq!(band(Some(f64::NAN)), 0);
    }

    #[test]
    fn a_non_finite_row_is_listed_as_not_available() {
        let mut rows = contrasts();
        rows.push(row("physical", "broken", f64::NAN, -0.1, 0.1));
        rows.push(row("physical", "unbounded", 0.1, 0.0, f64::INFINITY));
        let svg = forest_plot("t", "d", &rows, None);
        assert!(svg.contains(">broken</text>") && svg.contains(">unbounded</text>"));
        assert_eq!(svg.matches(">n/a</text>").count(), 2);
        assert_eq!(svg.matches("<line class=\"interval\"").count(), 4);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // Only non-finite rows: still a document with an axis.
        let svg = forest_plot("t", "d", &rows[4..], None);
        assert_eq!(attrs(&svg, "axis", "x1").len(), 1);
        assert_eq!(svg.matches(">n/a</text>").count(), 2);
    }
}
