//! Synthetic contacts with realistic distributions, generated deterministically (each
//! contact from its own seeded stream, so any range can be generated in any order), and
//! written with the mirror's own batch upsert so that every normalized column is exactly
//! what a sync would store.
//!
//! What a contact of account `index` looks like:
//! * a Brazilian name (accents, 5% in capitals; 2% without one), an e-mail for 75%;
//! * a mobile for 90% and a phone for 25%, written as people type them;
//! * created uniformly over the two years before the load; updated between its creation and
//!   the load, skewed towards recent (≈38% within the last 90 days); 1% never updated;
//! * a group for 70% (8 groups); an organization for 60%: "Rotik" for 5% of all contacts,
//!   the rest among 2,000 others with a long tail;
//! * custom fields: `plano` (Gold in three spellings 30%, Silver 30%, Bronze 25%, Platinum
//!   5%, absent 10%), `pontos` (log-normal points, median ≈ 400, some decimals, some empty
//!   or `n/a`), `vencimento` (a date within a year of the load, 10% written `DD/MM/YYYY`),
//!   `cidade`, and a formatted `cpf` for 40%.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use tarefas_core::eval::{Contact, Reference};

/// The organization the benchmark's segment looks for.
pub const ROTIK: &str = "Rotik";

const FIRST: &[&str] = &[
    "Ana",
    "Maria",
    "João",
    "José",
    "Antônio",
    "Francisco",
    "Carlos",
    "Paulo",
    "Pedro",
    "Lucas",
    "Luiz",
    "Marcos",
    "Luís",
    "Gabriel",
    "Rafael",
    "Daniel",
    "Marcelo",
    "Bruno",
    "Eduardo",
    "Felipe",
    "Raimundo",
    "Rodrigo",
    "Juliana",
    "Márcia",
    "Fernanda",
    "Patrícia",
    "Aline",
    "Sandra",
    "Camila",
    "Amanda",
    "Bruna",
    "Jéssica",
    "Letícia",
    "Júlia",
    "Luciana",
    "Vanessa",
    "Mariana",
    "Gabriela",
    "Conceição",
    "Débora",
];
const LAST: &[&str] = &[
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Marques",
    "Machado",
    "Mendes",
    "Freitas",
    "Cardoso",
    "Ramos",
    "Gonçalves",
    "Santana",
    "Teixeira",
    "Araújo",
    "Conceição",
    "Brandão",
    "Mourão",
    "Assunção",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "hotmail.com",
    "outlook.com",
    "yahoo.com.br",
    "uol.com.br",
    "bol.com.br",
    "terra.com.br",
    "empresa.com.br",
];
const GROUPS: &[&str] = &[
    "Clientes",
    "Leads",
    "VIP",
    "Inadimplentes",
    "Parceiros",
    "Fornecedores",
    "Suporte",
    "Ex-clientes",
];
const ORG_HEADS: &[&str] = &[
    "Padaria",
    "Mercado",
    "Farmácia",
    "Auto Peças",
    "Clínica",
    "Escritório",
    "Loja",
    "Ótica",
    "Construtora",
    "Transportadora",
    "Academia",
    "Restaurante",
];
const ORG_TAILS: &[&str] = &[
    "Central",
    "São Jorge",
    "Boa Vista",
    "do Povo",
    "Estrela",
    "Primavera",
    "Nova Era",
    "Brasil",
    "Paulista",
    "Mineira",
    "Avenida",
    "Real",
];
const CITIES: &[&str] = &[
    "São Paulo",
    "Rio de Janeiro",
    "Belo Horizonte",
    "Salvador",
    "Fortaleza",
    "Curitiba",
    "Recife",
    "Porto Alegre",
    "Manaus",
    "Belém",
    "Goiânia",
    "Campinas",
    "Florianópolis",
    "Vitória",
    "Natal",
];
const DDD: &[u32] = &[11, 21, 31, 71, 85, 41, 81, 51, 92, 91, 62, 19, 48, 27, 84];
/// Huggy id of the Rotik organization.
const ROTIK_ID: i64 = 7_000;
/// How many other organizations there are.
const OTHER_ORGS: u64 = 2_000;

/// A small, fast generator (SplitMix64): each contact gets its own stream, seeded from the
/// benchmark seed and the contact's index.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// Generates the contacts of one account.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    /// Seed of the whole data set.
    pub seed: u64,
    /// The first id of the account; contact `i` gets `first_id + 2i` or `first_id + 2i + 1`.
    pub first_id: i64,
    /// The "now" of the data set: every time is before it.
    pub base: DateTime<Utc>,
}

impl Generator {
    /// Contact number `index` of the account.
    pub fn contact(&self, index: u64) -> Contact {
        let mut r = Rng::new(self.seed, index);
        let id = self.first_id + 2 * index as i64 + (r.next() & 1) as i64;
        let (first, last) = (*r.pick(FIRST), *r.pick(LAST));
        let name = if r.chance(0.02) {
            None
        } else {
            let mut n = if r.chance(0.3) {
                format!("{first} {} {last}", r.pick(LAST))
            } else {
                format!("{first} {last}")
            };
            if r.chance(0.05) {
                n = n.to_uppercase();
            }
            Some(n)
        };
        let email = r.chance(0.75).then(|| {
            let mut e = format!(
                "{}.{}{}@{}",
                ascii(first),
                ascii(last),
                r.below(1000),
                r.pick(DOMAINS)
            );
            if r.chance(0.03) {
                e = e.to_uppercase();
            }
            e
        });
        let ddd = *r.pick(DDD);
        let mobile = r
            .chance(0.9)
            .then(|| format!("+55 ({ddd}) 9{}-{}", r.digits(4), r.digits(4)));
        let phone = r
            .chance(0.25)
            .then(|| format!("({ddd}) 3{}-{}", r.digits(3), r.digits(4)));

        let two_years = 730 * 86_400 * 1_000_000_i64;
        let age = (r.unit() * two_years as f64) as i64;
        let created_at = self.base - Duration::microseconds(age);
        let updated_at = (!r.chance(0.01)).then(|| {
            // Skewed towards recent: a uniform fraction of the time since creation.
            self.base - Duration::microseconds((age as f64 * r.unit()) as i64)
        });

        let group = r.chance(0.7).then(|| {
            let g = r.below(GROUPS.len() as u64);
            Reference {
                id: 100 + g as i64,
                name: Some(GROUPS[g as usize].to_string()),
            }
        });
        let organization = if r.chance(0.05) {
            Some(Reference {
                id: ROTIK_ID,
                name: Some(ROTIK.to_string()),
            })
        } else if r.chance(0.55 / 0.95) {
            // A long tail: a few organizations hold most of these contacts.
            let k = 1 + ((OTHER_ORGS - 1) as f64 * r.unit().powi(3)) as u64;
            let name = (!k.is_multiple_of(97)).then(|| {
                format!(
                    "{} {} {k}",
                    ORG_HEADS[(k % ORG_HEADS.len() as u64) as usize],
                    ORG_TAILS[(k / 7 % ORG_TAILS.len() as u64) as usize]
                )
            });
            Some(Reference {
                id: ROTIK_ID + k as i64,
                name,
            })
        } else {
            None
        };

        let mut custom = BTreeMap::new();
        let plano = r.unit();
        let plano = if plano < 0.10 {
            Some(*r.pick(&["Gold", "gold", "GOLD"]))
        } else if plano < 0.30 {
            Some("Gold")
        } else if plano < 0.60 {
            Some("Silver")
        } else if plano < 0.85 {
            Some("Bronze")
        } else if plano < 0.90 {
            Some("Platinum")
        } else {
            None
        };
        if let Some(p) = plano {
            custom.insert("plano".to_string(), p.to_string());
        }
        let pontos = r.unit();
        if pontos < 0.03 {
            custom.insert("pontos".to_string(), String::new());
        } else if pontos < 0.05 {
            custom.insert("pontos".to_string(), "n/a".to_string());
        } else if pontos < 0.95 {
            let p = (6.0 + r.normal()).exp().min(99_999.0);
            let text = if r.chance(0.1) {
                format!("{p:.2}")
            } else {
                format!("{}", p as i64)
            };
            custom.insert("pontos".to_string(), text);
        }
        if r.chance(0.8) {
            let d = (self.base + Duration::days(r.below(730) as i64 - 365)).date_naive();
            let text = if r.chance(0.1) {
                d.format("%d/%m/%Y").to_string()
            } else {
                d.format("%Y-%m-%d").to_string()
            };
            custom.insert("vencimento".to_string(), text);
        }
        if r.chance(0.85) {
            custom.insert("cidade".to_string(), r.pick(CITIES).to_string());
        }
        if r.chance(0.4) {
            let cpf = format!(
                "{}.{}.{}-{}",
                r.digits(3),
                r.digits(3),
                r.digits(3),
                r.digits(2)
            );
            custom.insert("cpf".to_string(), cpf);
        }

        Contact {
            id,
            name,
            mobile,
            phone,
            email,
            created_at: Some(created_at),
            updated_at,
            group,
            organization,
            custom,
        }
    }
}

/// A name as an e-mail's local part: lower-case ASCII letters.
fn ascii(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let c = match c {
                'á' | 'à' | 'â' | 'ã' | 'Á' => 'a',
                'é' | 'ê' | 'É' => 'e',
                'í' | 'Í' => 'i',
                'ó' | 'ô' | 'õ' | 'Ó' => 'o',
                'ú' | 'Ú' => 'u',
                'ç' => 'c',
                c => c,
            };
            c.is_ascii_alphabetic().then(|| c.to_ascii_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> Generator {
        Generator {
            seed: 7,
            first_id: 1_000,
            base: DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn contacts_are_deterministic_and_ids_increase() {
        let g = generator();
        assert_eq!(g.contact(42), g.contact(42));
        let ids: Vec<i64> = (0..1_000).map(|i| g.contact(i).id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn distributions_are_roughly_as_documented() {
        let g = generator();
        let n = 20_000;
        let contacts: Vec<Contact> = (0..n).map(|i| g.contact(i)).collect();
        let share = |f: &dyn Fn(&Contact) -> bool| {
            contacts.iter().filter(|c| f(c)).count() as f64 / n as f64
        };
        let rotik = share(&|c| {
            c.organization
                .as_ref()
                .is_some_and(|o| o.name.as_deref() == Some(ROTIK))
        });
        assert!((0.04..0.06).contains(&rotik), "rotik {rotik}");
        let gold = share(&|c| {
            c.custom
                .get("plano")
                .is_some_and(|p| p.eq_ignore_ascii_case("gold"))
        });
        assert!((0.27..0.33).contains(&gold), "gold {gold}");
        let recent = share(&|c| {
            c.updated_at
                .is_some_and(|u| u >= g.base - Duration::days(90))
        });
        assert!((0.33..0.43).contains(&recent), "recent {recent}");
        assert!(contacts
            .iter()
            .all(|c| c.created_at <= c.updated_at.or(c.created_at)));
    }
}
