//! Routing analysis: how tasks use experts, from task x expert routing counts.

use serde::Serialize;

/// The routing of one MoE block over the evaluated tasks.
#[derive(Clone, Debug, Serialize)]
pub struct RoutingAnalysis {
    /// Block index in the encoder.
    pub layer: usize,
    /// Tasks with at least one routed token, in task-id order.
    pub tasks: Vec<String>,
    /// Routing slots per task and expert.
    pub counts: Vec<Vec<i64>>,
    /// `P(expert | task)`: each row of `counts` normalised.
    pub load: Vec<Vec<f64>>,
    /// Entropy (nats) of the overall expert usage `P(expert)`; `ln E` when balanced.
    pub expert_entropy: f64,
    /// Entropy (nats) of `P(expert | task)` per task: low means a task concentrates on few
    /// experts.
    pub task_entropy: Vec<f64>,
    /// Mutual information `I(task; expert)` (nats) of the slot distribution: 0 when every task
    /// routes alike, up to `min(ln tasks, ln E)` when tasks use disjoint experts.
    pub mutual_information: f64,
    /// Cosine similarity of the tasks' `P(expert | task)` rows: 1 for identical routing.
    pub similarity: Vec<Vec<f64>>,
}

fn entropy(p: &[f64]) -> f64 {
    let h: f64 = p.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum();
    h.max(0.0) // -0.0 for a one-hot row
}

/// Analyses one block's `counts[task][expert]`; tasks without routed tokens are left out.
pub fn analyze(layer: usize, task_names: &[String], counts: &[Vec<i64>]) -> RoutingAnalysis {
    let kept: Vec<usize> = (0..counts.len())
        .filter(|&t| counts[t].iter().sum::<i64>() > 0)
        .collect();
    let rows: Vec<Vec<i64>> = kept.iter().map(|&t| counts[t].clone()).collect();
    let total: i64 = rows.iter().flatten().sum();
    let experts = rows.first().map_or(0, Vec::len);
    let load: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let n: i64 = r.iter().sum();
            r.iter().map(|&c| c as f64 / n as f64).collect()
        })
        .collect();
    let p_expert: Vec<f64> = (0..experts)
        .map(|e| rows.iter().map(|r| r[e]).sum::<i64>() as f64 / total.max(1) as f64)
        .collect();
    let mut mutual_information = 0.0;
    for r in &rows {
        let p_task = r.iter().sum::<i64>() as f64 / total as f64;
        for (e, &c) in r.iter().enumerate() {
            if c > 0 {
                let joint = c as f64 / total as f64;
                mutual_information += joint * (joint / (p_task * p_expert[e])).ln();
            }
        }
    }
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let similarity = load
        .iter()
        .map(|a| {
            load.iter()
                .map(|b| {
                    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
                })
                .collect()
        })
        .collect();
    RoutingAnalysis {
        layer,
        tasks: kept.iter().map(|&t| task_names[t].clone()).collect(),
        task_entropy: load.iter().map(|p| entropy(p)).collect(),
        expert_entropy: entropy(&p_expert),
        mutual_information,
        similarity,
        load,
        counts: rows,
    }
}

/// An SVG heatmap of `values` (rows x columns) on a white-to-blue scale from `lo` to `hi`,
/// with row and column labels and each cell's value printed.
///
/// Written directly as SVG rather than through plotters: its text layout needs a font backend
/// (system fonts or a bundled TTF), which machines without fonts lack; this needs nothing.
pub fn heatmap_svg(
    title: &str,
    row_labels: &[String],
    col_labels: &[String],
    values: &[Vec<f64>],
    lo: f64,
    hi: f64,
) -> String {
    let (cell, left, top) = (34.0, 150.0, 60.0);
    // Wide enough for the grid and for the title (about 7.5 px per character at 14 px).
    let width = (left + cell * col_labels.len() as f64 + 20.0).max(20.0 + 7.5 * title.len() as f64);
    let height = top + cell * row_labels.len() as f64 + 20.0;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"14\">{}</text>\n",
        esc(title)
    );
    for (j, label) in col_labels.iter().enumerate() {
        let x = left + cell * (j as f64 + 0.5);
        svg += &format!(
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            top - 6.0,
            esc(label)
        );
    }
    for (i, (label, row)) in row_labels.iter().zip(values).enumerate() {
        let y = top + cell * i as f64;
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            y + cell * 0.6,
            esc(label)
        );
        for (j, &v) in row.iter().enumerate() {
            let t = ((v - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0);
            let shade = |full: f64| (255.0 - t * (255.0 - full)).round() as u8;
            let (r, g, b) = (shade(8.0), shade(69.0), shade(148.0));
            let x = left + cell * j as f64;
            let ink = if t > 0.55 { "white" } else { "black" };
            svg += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" \
                 fill=\"rgb({r},{g},{b})\" stroke=\"#ddd\"/>\n\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\" \
                 font-size=\"9\">{v:.2}</text>\n",
                x + cell / 2.0,
                y + cell * 0.6
            );
        }
    }
    svg + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_tasks_have_full_information_and_zero_similarity() {
        let names = vec!["a".to_string(), "b".to_string(), "unused".to_string()];
        let counts = vec![vec![10, 0], vec![0, 10], vec![0, 0]];
        let r = analyze(3, &names, &counts);
        assert_eq!(r.tasks, vec!["a", "b"], "tasks without tokens are left out");
        assert!((r.mutual_information - 2f64.ln()).abs() < 1e-12);
        assert!((r.expert_entropy - 2f64.ln()).abs() < 1e-12);
        assert_eq!(r.task_entropy, vec![0.0, 0.0]);
        assert_eq!(r.similarity, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn identical_routing_has_no_information() {
        let names = vec!["a".to_string(), "b".to_string()];
        let r = analyze(0, &names, &[vec![3, 1], vec![6, 2]]);
        assert!(r.mutual_information.abs() < 1e-12);
        assert!((r.similarity[0][1] - 1.0).abs() < 1e-12);
        assert_eq!(r.load[1], vec![0.75, 0.25]);
    }

    #[test]
    fn heatmap_has_a_cell_per_value_and_escapes_labels() {
        let svg = heatmap_svg(
            "t<1>",
            &["r&1".into(), "r2".into()],
            &["e0".into(), "e1".into(), "e2".into()],
            &[vec![0.0, 0.5, 1.0], vec![1.0, 0.5, 0.0]],
            0.0,
            1.0,
        );
        assert_eq!(svg.matches("<rect x=").count(), 6);
        assert!(svg.contains("t&lt;1&gt;") && svg.contains("r&amp;1"));
        assert!(svg.contains("rgb(255,255,255)") && svg.contains("rgb(8,69,148)"));
    }
}
