//! SVG plots of the reports (plotters' SVG backend): curves of a metric with error bars.

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
}
