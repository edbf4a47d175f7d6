//! Whether routing follows task relatedness: how much the experts of two tasks of one family
//! overlap against two tasks of different families, whether each task's nearest task by routing
//! is of its family, and how well clustering tasks by routing recovers the declared families
//! (adjusted Rand index).
//!
//! Routing overlap is the histogram intersection `sum_e min(p_e, q_e)` of two tasks'
//! `P(expert | task)`: 1 for identical routing, 0 for disjoint experts.

use serde::Serialize;

/// How one MoE block's routing (or any task-by-task similarity, see [`family_structure`])
/// relates to the declared task families. "Overlap" below is the similarity measured: routing
/// overlap here, gradient cosine in [`crate::gradient_affinity`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilyRouting {
    /// Mean overlap over pairs of distinct tasks of one family; `None` without such a pair.
    pub within_family: Option<f64>,
    /// Mean overlap over pairs of tasks of different families; `None` without such a pair.
    pub across_family: Option<f64>,
    /// Tasks whose nearest task by overlap (ties to the first) is of their own family.
    pub nearest_in_family: usize,
    /// Tasks that have a family mate among the routed tasks (the denominator of
    /// `nearest_in_family`; chance is about `(family size - 1) / (tasks - 1)` each).
    pub with_family_mate: usize,
    /// Adjusted Rand index between the families and an average-linkage clustering of the tasks
    /// by routing distance (`1 - overlap`) into as many clusters as there are families: 1 when
    /// routing recovers the families exactly, about 0 for chance. `None` with fewer than two
    /// families or fewer than three tasks, or when every pair of tasks overlaps equally (the
    /// clustering would be the tie-break's).
    pub family_ari: Option<f64>,
}

/// Histogram intersection of two expert distributions.
pub fn overlap(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a.min(*b)).sum()
}

/// The family measures of one block from its tasks' `P(expert | task)` rows (`load`) and each
/// task's family.
pub fn family_routing(load: &[Vec<f64>], families: &[String]) -> FamilyRouting {
    let n = load.len().min(families.len());
    let ov: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| overlap(&load[i], &load[j])).collect())
        .collect();
    family_structure(&ov, families)
}

/// The family measures of any task-by-task similarity in which larger means closer (routing
/// overlap, gradient cosine): its mean within and across families, nearest tasks, and the
/// family ARI of an average-linkage clustering by distance `1 - similarity`. `similarity` is
/// square and symmetric; tasks beyond `families` are ignored.
pub fn family_structure(similarity: &[Vec<f64>], families: &[String]) -> FamilyRouting {
    let n = similarity.len().min(families.len());
    let ov: Vec<Vec<f64>> = similarity[..n]
        .iter()
        .map(|row| row[..n].to_vec())
        .collect();
    let (mut within, mut across) = (Vec::new(), Vec::new());
    for i in 0..n {
        for j in i + 1..n {
            match families[i] == families[j] {
                true => within.push(ov[i][j]),
                false => across.push(ov[i][j]),
            }
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let (mut nearest_in_family, mut with_family_mate) = (0, 0);
    for i in 0..n {
        if !(0..n).any(|j| j != i && families[j] == families[i]) {
            continue;
        }
        with_family_mate += 1;
        let nearest = (0..n)
            .filter(|&j| j != i)
            .fold(None::<usize>, |best, j| match best {
                Some(b) if ov[i][b] >= ov[i][j] => Some(b),
                _ => Some(j),
            });
        if nearest.is_some_and(|j| families[j] == families[i]) {
            nearest_in_family += 1;
        }
    }
    let mut names: Vec<&String> = families[..n].iter().collect();
    names.sort();
    names.dedup();
    // Equal routing distances between every pair (uniform routing, as under expert choice's
    // per-task capacity) leave the clustering to the tie-break: no ARI then.
    let pairs: Vec<f64> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| ov[i][j])
        .collect();
    let spread = pairs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - pairs.iter().copied().fold(f64::INFINITY, f64::min);
    let family_ari = (names.len() >= 2 && n >= 3 && spread > 1e-9).then(|| {
        let truth: Vec<usize> = families[..n]
            .iter()
            .map(|f| names.iter().position(|x| *x == f).unwrap_or(0))
            .collect();
        let distance: Vec<Vec<f64>> = ov
            .iter()
            .map(|row| row.iter().map(|o| 1.0 - o).collect())
            .collect();
        adjusted_rand_index(&truth, &average_linkage(&distance, names.len()))
    });
    FamilyRouting {
        within_family: mean(&within),
        across_family: mean(&across),
        nearest_in_family,
        with_family_mate,
        family_ari,
    }
}

/// Average-linkage agglomerative clustering of `n` items with pairwise `distance` into `k`
/// clusters; returns each item's cluster number. Deterministic: among equal distances the
/// first pair in index order merges.
pub fn average_linkage(distance: &[Vec<f64>], k: usize) -> Vec<usize> {
    let n = distance.len();
    let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let link = |a: &[usize], b: &[usize]| {
        let total: f64 = a
            .iter()
            .flat_map(|&i| b.iter().map(move |&j| distance[i][j]))
            .sum();
        total / (a.len() * b.len()) as f64
    };
    while clusters.len() > k.max(1) {
        let mut best = (0, 1, f64::INFINITY);
        for a in 0..clusters.len() {
            for b in a + 1..clusters.len() {
                let d = link(&clusters[a], &clusters[b]);
                if d < best.2 {
                    best = (a, b, d);
                }
            }
        }
        let merged = clusters.remove(best.1);
        clusters[best.0].extend(merged);
    }
    let mut label = vec![0; n];
    for (c, members) in clusters.iter().enumerate() {
        for &i in members {
            label[i] = c;
        }
    }
    label
}

/// The adjusted Rand index (Hubert and Arabie 1985) of two labelings of the same items: 1 for
/// identical partitions, 0 in expectation for independent ones, negative below chance. Two
/// labelings that each put every item in one cluster (or each in its own) count as equal: 1.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    let ka = a.iter().max().map_or(0, |m| m + 1);
    let kb = b.iter().max().map_or(0, |m| m + 1);
    let mut table = vec![vec![0u64; kb]; ka];
    for i in 0..n {
        table[a[i]][b[i]] += 1;
    }
    let pairs = |x: u64| (x * x.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = table.iter().flatten().map(|&c| pairs(c)).sum();
    let rows: f64 = table.iter().map(|r| pairs(r.iter().sum())).sum();
    let cols: f64 = (0..kb)
        .map(|j| pairs(table.iter().map(|r| r[j]).sum()))
        .sum();
    let total = pairs(n as u64);
    let expected = rows * cols / total.max(1.0);
    let max = (rows + cols) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_adjusted_rand_index_has_its_documented_values() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
        // Contingency table [[2, 0], [1, 1]]: index = C(2,2) = 1; rows C(2,2) + C(2,2) = 2;
        // columns C(3,2) + C(1,2) = 3; C(4,2) = 6 pairs; expected = 2 * 3 / 6 = 1;
        // max = (2 + 3) / 2 = 2.5: ARI = (1 - 1) / (2.5 - 1) = 0.
        assert!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 0, 1]).abs() < 1e-12);
        // Below chance: pairs split across.
        assert!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
    }

    #[test]
    fn average_linkage_recovers_two_obvious_groups() {
        let d = vec![
            vec![0.0, 0.1, 0.9, 0.8],
            vec![0.1, 0.0, 0.85, 0.9],
            vec![0.9, 0.85, 0.0, 0.2],
            vec![0.8, 0.9, 0.2, 0.0],
        ];
        let labels = average_linkage(&d, 2);
        assert_eq!(labels[0], labels[1]);
        assert_eq!(labels[2], labels[3]);
        assert_ne!(labels[0], labels[2]);
    }

    #[test]
    fn routing_by_family_scores_full_and_uniform_routing_scores_nothing() {
        let families = fam(&["a", "a", "b", "b"]);
        let by_family = vec![
            vec![0.5, 0.5, 0.0, 0.0],
            vec![0.4, 0.6, 0.0, 0.0],
            vec![0.0, 0.0, 0.7, 0.3],
            vec![0.0, 0.1, 0.6, 0.3],
        ];
        let r = family_routing(&by_family, &families);
        assert!(
            (r.within_family.unwrap() - (0.9 + 0.9) / 2.0).abs() < 1e-12,
            "{r:?}"
        );
        // Pairs (0, 3) and (1, 3) share 0.1 of expert 1; (0, 2) and (1, 2) nothing.
        assert!(
            (r.across_family.unwrap() - 0.2 / 4.0).abs() < 1e-12,
            "{r:?}"
        );
        assert_eq!((r.nearest_in_family, r.with_family_mate), (4, 4));
        assert_eq!(r.family_ari, Some(1.0));

        let uniform = vec![vec![0.25; 4]; 4];
        let r = family_routing(&uniform, &families);
        assert_eq!(r.within_family, r.across_family);
        // Every task is equally near every other: ties go to the first, task 0's mate for
        // tasks 1..: tasks 1 (family a) yes, 2 and 3 (family b) no, task 0 -> task 1 yes.
        assert_eq!((r.nearest_in_family, r.with_family_mate), (2, 4));
        // And no clustering to score: the ARI would be the tie-break's.
        assert_eq!(r.family_ari, None);
    }

    #[test]
    fn a_single_family_has_no_across_pairs_and_no_ari() {
        let r = family_routing(&[vec![1.0, 0.0], vec![0.0, 1.0]], &fam(&["a", "a"]));
        assert_eq!(r.within_family, Some(0.0));
        assert_eq!(r.across_family, None);
        assert_eq!(r.family_ari, None);
    }
}
