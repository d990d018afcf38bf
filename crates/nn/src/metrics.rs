//! Classification metrics: accuracy, confusion matrix, precision/recall/F1, ROC and AUC.

use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

/// Predicted classes from logits or probabilities `[N, C]` (the argmax of each row).
///
/// ```
/// use tapegrad_tape::Tensor;
/// let logits = Tensor::from_vec(vec![0.1f32, 2.0, 3.0, -1.0], &[2, 2]);
/// assert_eq!(tapegrad_nn::metrics::predictions(&logits), vec![1, 0]);
/// ```
pub fn predictions(scores: &Tensor) -> Vec<usize> {
    scores
        .detach()
        .argmax(Some(-1), false)
        .to_vec::<i64>()
        .into_iter()
        .map(|c| c as usize)
        .collect()
}

/// Fraction of rows whose argmax equals the int64 label.
///
/// ```
/// use tapegrad_tape::Tensor;
/// let logits = Tensor::from_vec(vec![0.1f32, 2.0, 3.0, -1.0], &[2, 2]);
/// assert_eq!(
///     tapegrad_nn::metrics::accuracy(&logits, &Tensor::from_vec(vec![1i64, 1], &[2])),
///     0.5
/// );
/// ```
pub fn accuracy(scores: &Tensor, labels: &Tensor) -> f64 {
    let preds = predictions(scores);
    let labels = labels.to_vec::<i64>();
    if labels.is_empty() {
        return 0.0;
    }
    preds.iter().zip(&labels).filter(|(p, l)| **p as i64 == **l).count() as f64
        / labels.len() as f64
}

/// `m[true][predicted]` counts over `classes` classes.
///
/// ```
/// let m = tapegrad_nn::metrics::confusion_matrix(&[0, 1, 1], &[0, 1, 0], 2);
/// assert_eq!(m, vec![vec![1, 1], vec![0, 1]]);
/// ```
pub fn confusion_matrix(predicted: &[usize], truth: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    for (&p, &t) in predicted.iter().zip(truth) {
        m[t][p] += 1;
    }
    m
}

/// Precision, recall and F1 of one class.
///
/// ```
/// use tapegrad_nn::metrics::{ClassScores, precision_recall_f1};
/// // Class 1 was predicted twice, once rightly, and its one sample was found.
/// let s: ClassScores = precision_recall_f1(&[vec![1, 1], vec![0, 1]])[1];
/// assert_eq!((s.precision, s.recall), (0.5, 1.0));
/// assert!((s.f1 - 2.0 / 3.0).abs() < 1e-12);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassScores {
    /// Of the predictions of this class, the fraction that were right.
    pub precision: f64,
    /// Of the samples of this class, the fraction found.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// Per-class precision, recall and F1 from a confusion matrix (0 where undefined).
///
/// ```
/// let m = vec![vec![1, 1], vec![0, 1]];
/// let s = tapegrad_nn::metrics::precision_recall_f1(&m);
/// assert_eq!((s[0].precision, s[0].recall), (1.0, 0.5));
/// ```
pub fn precision_recall_f1(confusion: &[Vec<usize>]) -> Vec<ClassScores> {
    let k = confusion.len();
    (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: f64 = (0..k).map(|t| confusion[t][c] as f64).sum();
            let actual: f64 = confusion[c].iter().map(|&v| v as f64).sum();
            let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
            let recall = if actual > 0.0 { tp / actual } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores { precision, recall, f1 }
        })
        .collect()
}

/// The ROC curve of scores for a binary problem: false-positive rates, true-positive rates
/// and the thresholds between them (scores at or above a threshold count as positive).
///
/// ```
/// let (fpr, tpr, _) =
///     tapegrad_nn::metrics::roc_curve(&[0.9, 0.8, 0.3, 0.1], &[true, false, true, false]);
/// assert_eq!((fpr.first(), tpr.last()), (Some(&0.0), Some(&1.0)));
/// ```
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let p = positive.iter().filter(|&&x| x).count().max(1) as f64;
    let n = positive.iter().filter(|&&x| !x).count().max(1) as f64;
    let (mut fpr, mut tpr, mut thresholds) = (vec![0.0], vec![0.0], vec![f64::INFINITY]);
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        // One point per distinct score.
        if k + 1 == order.len() || scores[order[k + 1]] != scores[i] {
            fpr.push(fp / n);
            tpr.push(tp / p);
            thresholds.push(scores[i]);
        }
    }
    (fpr, tpr, thresholds)
}

/// Area under a curve by the trapezoid rule (with [`roc_curve`]: the ROC AUC).
///
/// ```
/// use tapegrad_nn::metrics::{auc, roc_curve};
/// let (fpr, tpr, _) = roc_curve(&[0.9, 0.8, 0.3, 0.1], &[true, true, false, false]);
/// assert_eq!(auc(&fpr, &tpr), 1.0);
/// ```
pub fn auc(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2).zip(y.windows(2)).map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0).sum()
}
