//! NUBAN account numbers (CBN's Nigeria Uniform Bank Account Number): nine serial digits and a check digit
//! computed over the three-digit bank code and the serial with the weights 3-7-3.

use rand::Rng;

const WEIGHTS: [u32; 12] = [3, 7, 3, 3, 7, 3, 3, 7, 3, 3, 7, 3];

/// The check digit of `serial` (9 digits) at the bank with the 3-digit `bank_code`.
pub fn check_digit(bank_code: &str, serial: &str) -> Option<u32> {
    if bank_code.len() != 3 || serial.len() != 9 {
        return None;
    }
    let mut sum = 0;
    for (digit, weight) in bank_code.chars().chain(serial.chars()).zip(WEIGHTS) {
        sum += digit.to_digit(10)? * weight;
    }
    Some((10 - sum % 10) % 10)
}

/// True when `account_number` is a valid NUBAN at `bank_code`.
pub fn is_valid(bank_code: &str, account_number: &str) -> bool {
    if account_number.len() != 10 || !account_number.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let (serial, check) = account_number.split_at(9);
    check_digit(bank_code, serial) == check.chars().next().and_then(|c| c.to_digit(10))
}

/// A random NUBAN at `bank_code` (uniqueness is the database's job: retry on conflict).
pub fn generate(bank_code: &str) -> Option<String> {
    let serial = format!("{:09}", rand::thread_rng().gen_range(0..1_000_000_000u32));
    let check = check_digit(bank_code, &serial)?;
    Some(format!("{serial}{check}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cbn_worked_example_is_valid() {
        // CBN's example: bank 011 (First Bank), serial 000001457 → check digit 9.
        assert_eq!(check_digit("011", "000001457"), Some(9));
        assert!(is_valid("011", "0000014579"));
        assert!(!is_valid("011", "0000014578"));
    }

    #[test]
    fn generated_numbers_are_valid_and_every_single_digit_error_is_caught() {
        for _ in 0..200 {
            let number = generate("999").expect("valid bank code");
            assert!(is_valid("999", &number), "{number}");
            for position in 0..10 {
                let mut digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
                digits[position] = (digits[position] + 1) % 10;
                let altered: String = digits
                    .iter()
                    .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
                    .collect();
                assert!(
                    !is_valid("999", &altered),
                    "{number} → {altered} should fail"
                );
            }
        }
    }

    #[test]
    fn malformed_input_is_never_valid() {
        assert!(!is_valid("011", "123"));
        assert!(!is_valid("011", "abcdefghij"));
        assert_eq!(check_digit("11", "000001457"), None);
    }
}
