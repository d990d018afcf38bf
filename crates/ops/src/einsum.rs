//! `einsum`: sums of products named by an equation of index labels (PyTorch's
//! `torch.einsum`).
//!
//! The equation is parsed into one label list per operand (an ellipsis becomes labels of its
//! own, aligned from the right across operands), repeated labels within an operand become a
//! diagonal, and the operands are contracted left to right, two at a time, as one batched
//! `matmul`: labels shared and still needed later are the batch, labels shared and needed
//! no more are contracted, the rest are the rows and columns. Labels needed nowhere later
//! are summed out first. Everything is composed of recorded ops (permute, reshape,
//! index_select, sum, matmul), so it differentiates to any order.

use std::panic::Location;

use tapegrad_tape::{Error, Result, Tensor, or_panic};

use crate::MatmulOps;
use crate::reduce::sum_dims;
use crate::shape::{permute, reshape_to};

/// Labels are `A`-`Z` (0..26) and `a`-`z` (26..52), so sorting them is ASCII order; the
/// ellipsis's dimensions are labels from `ELLIPSIS` on.
const ELLIPSIS: usize = 52;

/// One side of the equation's term: its letter labels, with the ellipsis's position.
struct Term {
    labels: Vec<usize>,
    /// Where `...` stands among `labels`, if it does.
    ellipsis: Option<usize>,
}

fn label_name(label: usize) -> String {
    match label {
        0..26 => ((b'A' + label as u8) as char).to_string(),
        26..52 => ((b'a' + (label - 26) as u8) as char).to_string(),
        _ => "...".to_string(),
    }
}

fn parse_term(text: &str, invalid: &dyn Fn(String) -> Error) -> Result<Term> {
    let (mut labels, mut ellipsis) = (vec![], None);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            'A'..='Z' => labels.push(c as usize - 'A' as usize),
            'a'..='z' => labels.push(c as usize - 'a' as usize + 26),
            '.' => {
                if chars.next() != Some('.') || chars.next() != Some('.') {
                    return Err(invalid(format!("`{text}`: a lone `.` (an ellipsis is `...`)")));
                }
                if ellipsis.is_some() {
                    return Err(invalid(format!("`{text}` has more than one ellipsis")));
                }
                ellipsis = Some(labels.len());
            }
            _ => return Err(invalid(format!("`{text}`: `{c}` is not a label (a-z, A-Z)"))),
        }
    }
    Ok(Term { labels, ellipsis })
}

/// `term`'s labels with its ellipsis spelled out as the last `len` of the `width`
/// ellipsis labels.
fn expand(term: &Term, len: usize, width: usize) -> Vec<usize> {
    let mut labels = term.labels.clone();
    if let Some(at) = term.ellipsis {
        let own = (width - len..width).map(|i| ELLIPSIS + i);
        labels.splice(at..at, own);
    }
    labels
}

/// The operands' label lists and the output's, from `equation`.
fn parse(
    equation: &str,
    operands: &[&Tensor],
    invalid: &dyn Fn(String) -> Error,
) -> Result<(Vec<Vec<usize>>, Vec<usize>)> {
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((lhs, rhs)) => (lhs, Some(rhs)),
        None => (equation.as_str(), None),
    };
    let terms = lhs.split(',').map(|t| parse_term(t, invalid)).collect::<Result<Vec<_>>>()?;
    if terms.len() != operands.len() {
        return Err(invalid(format!(
            "the equation names {} operands, {} tensors were given",
            terms.len(),
            operands.len()
        )));
    }
    let mut ellipsis_lens = vec![];
    for (i, (term, x)) in terms.iter().zip(operands).enumerate() {
        let named = term.labels.len();
        let fits = if term.ellipsis.is_some() { x.dim() >= named } else { x.dim() == named };
        if !fits {
            return Err(invalid(format!(
                "operand {i} has shape {:?}, but its term names {named} dimensions{}",
                x.shape(),
                if term.ellipsis.is_some() { " and an ellipsis" } else { "" }
            )));
        }
        ellipsis_lens.push(x.dim() - named);
    }
    let width = terms
        .iter()
        .zip(&ellipsis_lens)
        .filter(|(t, _)| t.ellipsis.is_some())
        .map(|(_, &l)| l)
        .max()
        .unwrap_or(0);
    let inputs: Vec<Vec<usize>> =
        terms.iter().zip(&ellipsis_lens).map(|(t, &l)| expand(t, l, width)).collect();
    let output = match rhs {
        Some(rhs) => {
            let term = parse_term(rhs, invalid)?;
            let output = expand(&term, width, width);
            for (i, label) in output.iter().enumerate() {
                if output[..i].contains(label) {
                    return Err(invalid(format!(
                        "output label {} appears twice",
                        label_name(*label)
                    )));
                }
                if !inputs.iter().any(|labels| labels.contains(label)) {
                    return Err(invalid(format!(
                        "output label {} is in no operand",
                        label_name(*label)
                    )));
                }
            }
            output
        }
        None => {
            // The ellipsis first, then the labels that appear once, in ASCII order.
            let mut once: Vec<usize> = (0..ELLIPSIS)
                .filter(|l| inputs.iter().flatten().filter(|&m| m == l).count() == 1)
                .collect();
            let mut output: Vec<usize> = (ELLIPSIS..ELLIPSIS + width).collect();
            output.append(&mut once);
            output
        }
    };
    Ok((inputs, output))
}

/// `x`'s diagonal over every label it repeats, so that each label names one dimension.
fn diagonals(
    mut x: Tensor,
    mut labels: Vec<usize>,
    invalid: &dyn Fn(String) -> Error,
) -> Result<(Tensor, Vec<usize>)> {
    while let Some((first, second)) = (0..labels.len())
        .find_map(|i| labels[i + 1..].iter().position(|&l| l == labels[i]).map(|j| (i, i + 1 + j)))
    {
        let n = x.shape()[first];
        if x.shape()[second] != n {
            return Err(invalid(format!(
                "label {} repeats over sizes {} and {} in one operand",
                label_name(labels[first]),
                n,
                x.shape()[second]
            )));
        }
        // The pair moved last and flattened; the diagonal is every (n + 1)-th element.
        let rest: Vec<usize> = (0..labels.len()).filter(|&d| d != first && d != second).collect();
        let order: Vec<isize> = rest.iter().chain(&[first, second]).map(|&d| d as isize).collect();
        let mut shape: Vec<usize> = rest.iter().map(|&d| x.shape()[d]).collect();
        shape.push(n * n);
        let flat = reshape_to(&permute(&x, &order)?, &shape);
        let picks = Tensor::from_vec((0..n as i64).map(|i| i * (n as i64 + 1)).collect(), &[n]);
        x = crate::index::index_select(&flat, -1, &picks)?;
        let label = labels[first];
        labels = rest.iter().map(|&d| labels[d]).collect();
        labels.push(label);
    }
    Ok((x, labels))
}

/// `x` with the dimensions of `drop` (labels of `labels`) summed out.
fn sum_out(x: Tensor, labels: &mut Vec<usize>, drop: impl Fn(usize) -> bool) -> Result<Tensor> {
    let dims: Vec<isize> =
        (0..labels.len()).filter(|&d| drop(labels[d])).map(|d| d as isize).collect();
    if dims.is_empty() {
        return Ok(x);
    }
    labels.retain(|&l| !drop(l));
    sum_dims(&x, &dims, false)
}

/// `x` (dimensions named by `labels`) arranged as `groups` of labels, each label broadcast
/// to `sizes[label]` when `broadcast` says so, then flattened to one dimension per group.
fn grouped(
    x: &Tensor,
    labels: &[usize],
    groups: [&[usize]; 3],
    sizes: &[usize],
    broadcast: [bool; 3],
) -> Result<(Tensor, Vec<usize>)> {
    let order: Vec<isize> = groups
        .iter()
        .flat_map(|g| g.iter().map(|l| labels.iter().position(|m| m == l).unwrap() as isize))
        .collect();
    let arranged = permute(x, &order)?;
    let mut full = vec![];
    let mut flat = vec![];
    let mut at = 0;
    for (group, wide) in groups.iter().zip(broadcast) {
        let mut product = 1;
        for &label in group.iter() {
            let size = if wide { sizes[label] } else { arranged.shape()[at] };
            full.push(size);
            product *= size;
            at += 1;
        }
        flat.push(product);
    }
    let wide = arranged.try_broadcast_to(&full)?;
    Ok((reshape_to(&wide, &flat), full))
}

#[track_caller]
fn einsum_impl(equation: &str, operands: &[&Tensor]) -> Result<Tensor> {
    let location = Location::caller();
    let invalid = |message: String| Error::InvalidArgument { op: "einsum", message, location };
    if operands.is_empty() {
        return Err(invalid("needs at least one operand".into()));
    }
    let (inputs, output) = parse(equation, operands, &invalid)?;
    // Each label's size, size-1 dimensions broadcasting.
    let mut sizes = vec![1usize; ELLIPSIS * 2];
    for (i, (labels, x)) in inputs.iter().zip(operands).enumerate() {
        for (&label, &size) in labels.iter().zip(x.shape()) {
            let known = &mut sizes[label];
            if size != 1 && *known != 1 && size != *known {
                return Err(invalid(format!(
                    "label {} has size {known} in one place and {size} in operand {i} \
                     (shape {:?})",
                    label_name(label),
                    x.shape()
                )));
            }
            if size != 1 {
                *known = size;
            }
        }
    }
    let mut operands = operands
        .iter()
        .zip(inputs)
        .map(|(x, labels)| diagonals((*x).clone(), labels, &invalid))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let (mut acc, mut acc_labels) = operands.next().expect("one operand at least");
    let rest: Vec<(Tensor, Vec<usize>)> = operands.collect();
    for (k, (b, mut b_labels)) in rest.iter().cloned().enumerate() {
        // Labels that the operands after this one or the output still need.
        let later: Vec<usize> = rest[k + 1..]
            .iter()
            .flat_map(|(_, l)| l.iter().copied())
            .chain(output.clone())
            .collect();
        let needed = |l: usize, other: &[usize]| later.contains(&l) || other.contains(&l);
        let a_keep = b_labels.clone();
        acc = sum_out(acc, &mut acc_labels, |l| !needed(l, &a_keep))?;
        let b_keep = acc_labels.clone();
        let b = sum_out(b, &mut b_labels, |l| !needed(l, &b_keep))?;
        let shared = |l: &&usize| b_labels.contains(l);
        let batch: Vec<usize> =
            acc_labels.iter().filter(shared).filter(|l| later.contains(l)).copied().collect();
        let contracted: Vec<usize> =
            acc_labels.iter().filter(shared).filter(|l| !later.contains(l)).copied().collect();
        let left: Vec<usize> =
            acc_labels.iter().filter(|l| !b_labels.contains(l)).copied().collect();
        let right: Vec<usize> =
            b_labels.iter().filter(|l| !acc_labels.contains(l)).copied().collect();
        let (a3, a_full) =
            grouped(&acc, &acc_labels, [&batch, &left, &contracted], &sizes, [true, false, true])?;
        let (b3, b_full) =
            grouped(&b, &b_labels, [&batch, &contracted, &right], &sizes, [true, true, false])?;
        let product = a3.try_matmul(&b3)?;
        let (nb, nl) = (batch.len(), left.len());
        let shape: Vec<usize> =
            a_full[..nb + nl].iter().chain(&b_full[nb + contracted.len()..]).copied().collect();
        acc = reshape_to(&product, &shape);
        acc_labels = batch.into_iter().chain(left).chain(right).collect();
    }
    acc = sum_out(acc, &mut acc_labels, |l| !output.contains(&l))?;
    let order: Vec<isize> = output
        .iter()
        .map(|l| acc_labels.iter().position(|m| m == l).expect("output labels checked") as isize)
        .collect();
    let arranged = permute(&acc, &order)?;
    let full: Vec<usize> = output.iter().map(|&l| sizes[l]).collect();
    arranged.try_broadcast_to(&full)
}

/// Sums of products of `operands` named by an equation of index labels (PyTorch's
/// `torch.einsum`): `"bij,bjk->bik"` is a batched matrix product, `"ij->ji"` a transpose,
/// `"ii->i"` a diagonal, `"bhqd,bhkd->bhqk"` attention scores. Labels are letters; `...`
/// stands for the dimensions not named (aligned from the right, as in broadcasting); size-1
/// dimensions broadcast; without `->` the output is the labels that appear once, in
/// alphabetical order (capitals first). Differentiable to any order.
///
/// ```
/// use tapegrad_ops::einsum;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 2.0], &[2, 2]);
/// assert_eq!(einsum("ij,jk->ik", &[&a, &b]).to_vec::<f32>(), vec![1.0, 4.0, 3.0, 8.0]);
/// assert_eq!(einsum("ii", &[&a]).item(), 5.0); // the trace
/// ```
#[track_caller]
pub fn einsum(equation: &str, operands: &[&Tensor]) -> Tensor {
    or_panic(einsum_impl(equation, operands))
}

/// [`einsum`], returning an error instead of panicking: an equation that does not fit the
/// operands names what is wrong.
///
/// ```
/// use tapegrad_ops::try_einsum;
/// use tapegrad_tape::Tensor;
/// let (a, b) = (Tensor::zeros(&[2, 3]), Tensor::zeros(&[4, 5]));
/// let err = try_einsum("ij,jk->ik", &[&a, &b]).unwrap_err();
/// assert!(err.to_string().contains("label j has size 3 in one place and 4 in operand 1"));
/// ```
#[track_caller]
pub fn try_einsum(equation: &str, operands: &[&Tensor]) -> Result<Tensor> {
    einsum_impl(equation, operands)
}
