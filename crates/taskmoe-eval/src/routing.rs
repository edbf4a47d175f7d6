//! Routing analysis: how tasks use experts, from task x expert routing counts.

use serde::Serialize;

use crate::evaluate::GateStats;
use crate::routing_quality::{family_routing, FamilyRouting};

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
    /// The family of each task of `tasks`.
    pub families: Vec<String>,
    /// Whether the routing follows the families: within- against across-family overlap, each
    /// task's nearest task, the adjusted Rand index of a clustering by routing.
    pub family: FamilyRouting,
    /// Per task of `tasks`: how decided its gates are (empty when not measured).
    pub gates: Vec<GateStats>,
    /// Token-weighted mean gate entropy (nats) over the tasks; `ln E` is undecided.
    pub gate_entropy: Option<f64>,
    /// Token-weighted mean top-1 margin over the tasks; 0 is undecided.
    pub top1_margin: Option<f64>,
}

fn entropy(p: &[f64]) -> f64 {
    let h: f64 = p.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum();
    h.max(0.0) // -0.0 for a one-hot row
}

/// Analyses one block's `counts[task][expert]` and, when measured, its `gates` (all by task
/// id, as `task_names` and `families`); tasks without routed tokens are left out.
pub fn analyze(
    layer: usize,
    task_names: &[String],
    families: &[String],
    counts: &[Vec<i64>],
    gates: Option<&[GateStats]>,
) -> RoutingAnalysis {
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
    let families: Vec<String> = kept.iter().map(|&t| families[t].clone()).collect();
    let gates: Vec<GateStats> = gates.map_or(Vec::new(), |g| {
        kept.iter().filter_map(|&t| g.get(t).copied()).collect()
    });
    let tokens: u64 = gates.iter().map(|g| g.tokens).sum();
    let weighted = |f: fn(&GateStats) -> f64| {
        (tokens > 0)
            .then(|| gates.iter().map(|g| f(g) * g.tokens as f64).sum::<f64>() / tokens as f64)
    };
    let (gate_entropy, top1_margin) = (weighted(|g| g.entropy), weighted(|g| g.top1_margin));
    RoutingAnalysis {
        gates,
        gate_entropy,
        top1_margin,
        layer,
        tasks: kept.iter().map(|&t| task_names[t].clone()).collect(),
        family: family_routing(&load, &families),
        families,
        task_entropy: load.iter().map(|p| entropy(p)).collect(),
        expert_entropy: entropy(&p_expert),
        mutual_information,
        similarity,
        load,
        counts: rows,
    }
}

/// An SVG heatmap of `values` (rows x columns) on a white-to-blue scale from `lo` to `hi`,
/// with row and column labels and each cell's value printed; each `(first, count)` of
/// `outline` draws a frame around rows `first..first + count` (across every column, or, when
/// the map is square, around the diagonal block of those rows and columns: task families).
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
    outline: &[(usize, usize)],
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
    let square = row_labels.len() == col_labels.len();
    for &(first, count) in outline {
        let y = top + cell * first as f64;
        let (x, w) = match square {
            true => (left + cell * first as f64, cell * count as f64),
            false => (left, cell * col_labels.len() as f64),
        };
        svg += &format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"none\" \
             stroke=\"#d62728\" stroke-width=\"2\"/>\n",
            cell * count as f64
        );
    }
    svg + "</svg>\n"
}

/// The runs of equal consecutive `families` as `(first, count)`: the blocks
/// [`heatmap_svg`] outlines once tasks are ordered by family.
pub fn family_blocks(families: &[String]) -> Vec<(usize, usize)> {
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    for (i, f) in families.iter().enumerate() {
        match blocks.last_mut() {
            Some((first, count)) if families[*first] == *f => *count += 1,
            _ => blocks.push((i, 1)),
        }
    }
    blocks
}

impl RoutingAnalysis {
    /// The same analysis with its tasks ordered by family (stable), so that each family is
    /// one block of rows (and of columns of `similarity`).
    pub fn by_family(&self) -> RoutingAnalysis {
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        order.sort_by(|&a, &b| self.families[a].cmp(&self.families[b]));
        let pick = |v: &[f64]| order.iter().map(|&j| v[j]).collect::<Vec<f64>>();
        RoutingAnalysis {
            tasks: order.iter().map(|&i| self.tasks[i].clone()).collect(),
            counts: order.iter().map(|&i| self.counts[i].clone()).collect(),
            load: order.iter().map(|&i| self.load[i].clone()).collect(),
            task_entropy: pick(&self.task_entropy),
            similarity: order.iter().map(|&i| pick(&self.similarity[i])).collect(),
            families: order.iter().map(|&i| self.families[i].clone()).collect(),
            gates: order
                .iter()
                .filter_map(|&i| self.gates.get(i).copied())
                .collect(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_tasks_have_full_information_and_zero_similarity() {
        let names = vec!["a".to_string(), "b".to_string(), "unused".to_string()];
        let counts = vec![vec![10, 0], vec![0, 10], vec![0, 0]];
        let r = analyze(3, &names, &names, &counts, None);
        assert_eq!(r.tasks, vec!["a", "b"], "tasks without tokens are left out");
        assert!((r.mutual_information - 2f64.ln()).abs() < 1e-12);
        assert!((r.expert_entropy - 2f64.ln()).abs() < 1e-12);
        assert_eq!(r.task_entropy, vec![0.0, 0.0]);
        assert_eq!(r.similarity, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn identical_routing_has_no_information() {
        let names = vec!["a".to_string(), "b".to_string()];
        let r = analyze(0, &names, &names, &[vec![3, 1], vec![6, 2]], None);
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
            &[(1, 1)],
        );
        assert_eq!(
            svg.matches("<rect x=").count(),
            7,
            "6 cells and one outline"
        );
        assert!(svg.contains("stroke=\"#d62728\""));
        assert!(svg.contains("t&lt;1&gt;") && svg.contains("r&amp;1"));
        assert!(svg.contains("rgb(255,255,255)") && svg.contains("rgb(8,69,148)"));
    }

    #[test]
    fn ordering_by_family_makes_each_family_one_block() {
        let names: Vec<String> = ["a1", "b1", "a2"].iter().map(|s| s.to_string()).collect();
        let fams: Vec<String> = ["a", "b", "a"].iter().map(|s| s.to_string()).collect();
        let r = analyze(
            1,
            &names,
            &fams,
            &[vec![4, 0], vec![0, 4], vec![3, 1]],
            None,
        );
        let o = r.by_family();
        assert_eq!(o.tasks, vec!["a1", "a2", "b1"]);
        assert_eq!(o.load[1], vec![0.75, 0.25]);
        assert_eq!(o.similarity[0][2], r.similarity[0][1]);
        assert_eq!(family_blocks(&o.families), vec![(0, 2), (2, 1)]);
    }
}
