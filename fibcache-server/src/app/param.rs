//! The `{n}` of `/fib/{n}`: which spellings name a number, and which status refuses the rest.

use hyper::StatusCode;

/// Parses the `{n}` of `/fib/{n}`: an optional sign and decimal digits.
///
/// Not an integer is 400; an integer outside `0..=max_n` (however many digits) is 422.
pub(crate) fn parse_n(param: &str, max_n: u64) -> Result<u64, (StatusCode, String)> {
    let (negative, digits) = match param.as_bytes().first() {
        Some(b'-') => (true, &param[1..]),
        Some(b'+') => (false, &param[1..]),
        _ => (false, param),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = param.chars().take(32).collect();
        return Err((
            StatusCode::BAD_REQUEST,
            format!("n must be a decimal integer, got {shown:?}"),
        ));
    }
    let significant = digits.trim_start_matches('0');
    let out_of_range = || {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("n must be between 0 and {max_n}"),
        )
    };
    if significant.is_empty() {
        return Ok(0);
    }
    if negative || significant.len() > 20 {
        return Err(out_of_range());
    }
    match significant.parse::<u64>() {
        Ok(n) if n <= max_n => Ok(n),
        _ => Err(out_of_range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(param: &str) -> Result<u64, u16> {
        parse_n(param, 92).map_err(|(status, _)| status.as_u16())
    }

    #[test]
    fn canonical_forms_of_one_number_parse_alike() {
        assert_eq!(status("5"), Ok(5));
        assert_eq!(status("05"), Ok(5));
        assert_eq!(status("+5"), Ok(5));
        assert_eq!(status("0000"), Ok(0));
        assert_eq!(status("-0"), Ok(0));
        assert_eq!(status("92"), Ok(92));
    }

    #[test]
    fn non_integers_are_400_and_out_of_range_is_422() {
        for bad in [
            "", "abc", "5a", "1.5", " 5", "5 ", "+", "-", "0x10", "1e3", "%35",
        ] {
            assert_eq!(status(bad), Err(400), "{bad:?}");
        }
        for out in [
            "-1",
            "93",
            "99999999999999999999",
            "184467440737095516160000",
        ] {
            assert_eq!(status(out), Err(422), "{out:?}");
        }
    }
}
