//! Detection metrics on scored samples: AUPRC (average precision).

/// Average precision: the area under the precision-recall curve, stepwise (as
/// scikit-learn's `average_precision_score`). None without positives.
pub fn auprc(scored: &mut [(f32, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|s| s.1).count();
    if positives == 0 {
        return None;
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < scored.len() {
        // Tied scores are one threshold.
        let score = scored[i].0;
        while i < scored.len() && scored[i].0 == score {
            if scored[i].1 {
                tp += 1
            } else {
                fp += 1
            }
            i += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
        last_recall = recall;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_matches_hand_computed_cases() {
        let mut perfect = vec![(0.9, true), (0.8, true), (0.1, false)];
        assert!((auprc(&mut perfect).unwrap() - 1.0).abs() < 1e-12);
        // sklearn: average_precision_score([1,0,1,0], [.9,.8,.7,.1]) = 0.8333
        let mut mixed = vec![(0.9, true), (0.8, false), (0.7, true), (0.1, false)];
        assert!((auprc(&mut mixed).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(auprc(&mut [(0.3, false)]), None);
    }
}
