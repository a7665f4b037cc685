//! The fake Huggy's deterministic data set: Brazilian contacts and their chats, generated
//! from a seed with a small self-contained PRNG, so that the same seed gives the same data
//! on every run and machine.
//!
//! Dates are spread over the two years before [`epoch`] (2026-11-01T00:00:00-03:00), never
//! relative to the clock. Contact `i` depends only on the seed and `i`, so a larger data set
//! extends a smaller one. The first contacts have fixed creation dates on year boundaries
//! (see [`BOUNDARY_CREATED_AT`]) for "created on 31/12" segments.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use serde_json::Value;

use tarefas_huggy::model::{
    situation, Channel, Chat, Contact, CustomerRef, LastMessage, NamedRef, WorkflowRef,
};

/// First contact id; contacts are numbered from here without gaps.
pub const FIRST_CONTACT_ID: i64 = 1001;
/// First chat id; generated chats are numbered from here, new chats continue after them.
pub const FIRST_CHAT_ID: i64 = 500_001;

/// The instant the data set is anchored at: 2026-11-01T00:00:00-03:00.
pub fn epoch() -> DateTime<FixedOffset> {
    brt()
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("valid epoch")
}

/// Brasília time (UTC-03:00), the offset of every generated date.
pub fn brt() -> FixedOffset {
    FixedOffset::west_opt(3 * 3600).expect("valid offset")
}

/// Creation dates of contacts 0.., whatever the seed (when that many contacts exist):
/// 31/12/2025 in the morning, 31/12/2025 one second before midnight (already 2026 in UTC),
/// 01/01/2026 at midnight, and 31/12/2024.
pub const BOUNDARY_CREATED_AT: [&str; 4] = [
    "2025-12-31T10:15:00-03:00",
    "2025-12-31T23:59:59-03:00",
    "2026-01-01T00:00:00-03:00",
    "2024-12-31T08:30:00-03:00",
];

/// The WhatsApp channels: (id, fixed uuid, display name).
pub const CHANNELS: [(i64, &str, &str); 3] = [
    (
        1,
        "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11",
        "+55 11 4000-1000",
    ),
    (
        2,
        "9b8e1f44-2c6d-4a7e-8f13-5d2c9e7b6a22",
        "+55 21 3000-2000",
    ),
    (
        3,
        "c3d7a9e0-4b5f-4e21-9c8d-7a6b5c4d3e33",
        "+55 31 2500-3000",
    ),
];

/// Departments: (id, name).
pub const DEPARTMENTS: [(i64, &str); 5] = [
    (1, "Suporte"),
    (2, "Vendas"),
    (3, "Financeiro"),
    (4, "Cobrança"),
    (5, "Pós-venda"),
];

/// Contact groups: (id, name).
pub const GROUPS: [(i64, &str); 10] = [
    (1, "VIP"),
    (2, "Varejo"),
    (3, "Atacado"),
    (4, "Revenda"),
    (5, "Parceiros"),
    (6, "Leads"),
    (7, "Inativos"),
    (8, "Corporativo"),
    (9, "Governo"),
    (10, "Estudantes"),
];

/// Organizations: (id, name).
pub const ORGANIZATIONS: [(i64, &str); 10] = [
    (101, "Rotik"),
    (102, "Padaria Pão Quente"),
    (103, "Mercado Bom Preço"),
    (104, "Construtora Horizonte"),
    (105, "Clínica Vida"),
    (106, "Escola Saber"),
    (107, "Auto Peças Rota"),
    (108, "Farmácia Saúde"),
    (109, "Tech Sul"),
    (110, "Loja Estrela"),
];

/// Values of the `plano` custom field.
pub const PLANS: [&str; 3] = ["gold", "silver", "bronze"];

const FIRST_NAMES: [&str; 60] = [
    "Ana",
    "Maria",
    "João",
    "José",
    "Pedro",
    "Paulo",
    "Lucas",
    "Gabriel",
    "Rafael",
    "Mateus",
    "Juliana",
    "Fernanda",
    "Camila",
    "Beatriz",
    "Larissa",
    "Mariana",
    "Letícia",
    "Amanda",
    "Bruna",
    "Patrícia",
    "Carlos",
    "Antônio",
    "Francisco",
    "Luiz",
    "Marcos",
    "André",
    "Felipe",
    "Gustavo",
    "Thiago",
    "Rodrigo",
    "Aline",
    "Vanessa",
    "Débora",
    "Tatiane",
    "Priscila",
    "Renata",
    "Cláudia",
    "Luciana",
    "Sandra",
    "Simone",
    "Eduardo",
    "Ricardo",
    "Vinícius",
    "Leonardo",
    "Diego",
    "Bruno",
    "Fábio",
    "Márcio",
    "Sérgio",
    "Raimundo",
    "Conceição",
    "Jéssica",
    "Natália",
    "Gabriela",
    "Isabela",
    "Luana",
    "Caio",
    "Otávio",
    "Heloísa",
    "Valentina",
];

const LAST_NAMES: [&str; 50] = [
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
    "Melo",
    "Correia",
    "Cavalcanti",
    "Monteiro",
    "Moura",
    "Pinto",
    "Azevedo",
    "Borges",
    "Brandão",
    "Camargo",
    "Figueiredo",
    "Batista",
    "Castro",
    "Conceição",
];

const EMAIL_DOMAINS: [&str; 7] = [
    "gmail.com",
    "hotmail.com",
    "outlook.com",
    "yahoo.com.br",
    "uol.com.br",
    "bol.com.br",
    "terra.com.br",
];

/// Area codes (DDD) of large Brazilian cities.
const DDDS: [u32; 16] = [
    11, 21, 31, 41, 51, 61, 71, 81, 85, 19, 27, 48, 62, 92, 91, 13,
];

/// SplitMix64: a tiny, fast, well-mixed PRNG (Steele, Lea, Flood 2014). Not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift keeps the bias negligible for the small ranges used here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One item of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// SplitMix64's output function: a bijective mix of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps 64 random bits to `[0, 1)`.
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A stream for item `index` of kind `salt`, independent of every other item.
fn stream(seed: u64, salt: u64, index: u64) -> SplitMix64 {
    SplitMix64::new(mix(
        seed ^ mix(salt.wrapping_mul(0x1000_0000_01B3) ^ mix(index))
    ))
}

/// A generated data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Contacts sorted by id, from [`FIRST_CONTACT_ID`].
    pub contacts: Vec<Contact>,
    /// Chats sorted by id, from [`FIRST_CHAT_ID`]; `agents[i]` is the agent of `chats[i]`.
    pub chats: Vec<Chat>,
    /// The agent handling each chat (`in_chat` chats have one).
    pub agents: Vec<Option<i64>>,
}

impl Dataset {
    /// Generates `contacts` contacts and `chats` chats from `seed`.
    pub fn generate(contacts: usize, chats: usize, seed: u64) -> Self {
        let contact_list: Vec<Contact> = (0..contacts).map(|i| contact(seed, i)).collect();
        let mut chat_list = Vec::with_capacity(chats);
        let mut agents = Vec::with_capacity(chats);
        for i in 0..chats {
            let (chat, agent) = chat(seed, i, contacts);
            chat_list.push(chat);
            agents.push(agent);
        }
        Self {
            contacts: contact_list,
            chats: chat_list,
            agents,
        }
    }
}

/// The channel with this uuid, as chats show it.
pub fn channel_by_uuid(uuid: &str) -> Option<Channel> {
    CHANNELS
        .iter()
        .find(|(_, u, _)| *u == uuid)
        .map(|&(id, uuid, name)| channel(id, uuid, name))
}

/// The department with this id, as chats show it.
pub fn department(id: i64) -> Option<NamedRef> {
    DEPARTMENTS
        .iter()
        .find(|(d, _)| *d == id)
        .map(|&(id, name)| NamedRef {
            id,
            name: Some(name.to_owned()),
        })
}

fn channel(id: i64, uuid: &str, name: &str) -> Channel {
    Channel {
        id,
        uuid: Some(uuid.to_owned()),
        kind: Some("whatsapp".to_owned()),
        name: Some(name.to_owned()),
    }
}

fn named((id, name): (i64, &str)) -> NamedRef {
    NamedRef {
        id,
        name: Some(name.to_owned()),
    }
}

/// Contact number `index` (0-based) of the data set of `seed`.
fn contact(seed: u64, index: usize) -> Contact {
    let mut rng = stream(seed, 1, index as u64);
    let first = *rng.pick(&FIRST_NAMES);
    let last = *rng.pick(&LAST_NAMES);
    let name = if rng.chance(0.3) {
        format!("{first} {} {last}", rng.pick(&LAST_NAMES))
    } else {
        format!("{first} {last}")
    };
    let email = rng.chance(0.9).then(|| {
        let separator = *rng.pick(&[".", "_", ""]);
        let number = if rng.chance(0.35) {
            rng.below(100).to_string()
        } else {
            String::new()
        };
        format!(
            "{}{separator}{}{number}@{}",
            ascii_fold(first),
            ascii_fold(last),
            rng.pick(&EMAIL_DOMAINS)
        )
    });
    let ddd = *rng.pick(&DDDS);
    let mobile = format!("55{ddd}9{}{:07}", 6 + rng.below(4), rng.below(10_000_000));
    let phone = rng
        .chance(0.35)
        .then(|| format!("55{ddd}{}{:07}", 2 + rng.below(4), rng.below(10_000_000)));
    let group = rng.chance(0.85).then(|| named(*rng.pick(&GROUPS)));
    let organization = rng.chance(0.7).then(|| named(*rng.pick(&ORGANIZATIONS)));
    // The first boundary contact works at Rotik, so the seed article's "created on 31/12
    // AND organization Rotik" segment is never empty.
    let organization = if index == 0 {
        ORGANIZATIONS
            .iter()
            .find(|(_, n)| *n == "Rotik")
            .map(|o| named(*o))
    } else {
        organization
    };
    let custom_fields = custom_fields(&mut rng);

    let two_years = 730 * 86_400;
    let created_at = match BOUNDARY_CREATED_AT.get(index) {
        Some(fixed) => DateTime::parse_from_rfc3339(fixed).expect("valid boundary date"),
        None => epoch() - Duration::seconds(1 + rng.below(two_years) as i64),
    };
    let remaining = (epoch() - created_at).num_seconds().max(1) as u64;
    let updated_at = created_at + Duration::seconds(rng.below(remaining) as i64);

    Contact {
        id: FIRST_CONTACT_ID + index as i64,
        name: Some(name),
        email,
        mobile: Some(mobile),
        phone,
        created_at: Some(created_at),
        updated_at: Some(updated_at),
        group,
        organization,
        custom_fields,
    }
}

/// `plano`, `vencimento` (YYYY-MM-DD) and `pontos` (an integer as text); some contacts have
/// none, some have values that do not parse.
fn custom_fields(rng: &mut SplitMix64) -> BTreeMap<String, Value> {
    let mut fields = BTreeMap::new();
    if rng.chance(0.08) {
        return fields;
    }
    if rng.chance(0.9) {
        fields.insert("plano".to_owned(), Value::from(*rng.pick(&PLANS)));
    }
    if rng.chance(0.85) {
        let day =
            epoch().date_naive() - Duration::days(120) + Duration::days(rng.below(360) as i64);
        fields.insert(
            "vencimento".to_owned(),
            Value::from(day.format("%Y-%m-%d").to_string()),
        );
    }
    if rng.chance(0.8) {
        fields.insert(
            "pontos".to_owned(),
            Value::from(rng.below(5000).to_string()),
        );
    }
    if rng.chance(0.05) {
        let (key, bad) = *rng.pick(&[
            ("vencimento", "31/02/2026"),
            ("vencimento", "em breve"),
            ("pontos", "mil"),
            ("pontos", "12,5"),
            ("plano", ""),
        ]);
        fields.insert(key.to_owned(), Value::from(bad));
    }
    fields
}

/// Chat number `index` (0-based) of the data set of `seed`, with its agent.
fn chat(seed: u64, index: usize, contacts: usize) -> (Chat, Option<i64>) {
    let mut rng = stream(seed, 2, index as u64);
    let customer = (contacts > 0).then(|| CustomerRef {
        id: FIRST_CONTACT_ID + rng.below(contacts as u64) as i64,
    });
    let roll = rng.unit();
    let situation = match roll {
        r if r < 0.28 => situation::AUTO,
        r if r < 0.48 => situation::WAIT_FOR_CHAT,
        r if r < 0.78 => situation::IN_CHAT,
        r if r < 0.85 => situation::FINISHING,
        _ => situation::CLOSED,
    };
    let agent = (situation == situation::IN_CHAT
        || situation == situation::FINISHING
        || situation == situation::CLOSED)
        .then(|| 1 + rng.below(12) as i64);
    let department = rng.chance(0.9).then(|| named(*rng.pick(&DEPARTMENTS)));
    let &(channel_id, uuid, channel_name) = rng.pick(&CHANNELS);
    let workflow = rng.chance(0.7).then(|| {
        let id = 1 + rng.below(3) as i64;
        WorkflowRef {
            id,
            step_id: Some(id * 10 + 1 + rng.below(5) as i64),
        }
    });
    let created_at = epoch() - Duration::seconds(60 + rng.below(60 * 86_400) as i64);
    let remaining = (epoch() - created_at).num_seconds().clamp(1, 3 * 86_400) as u64;
    let updated_at = created_at + Duration::seconds(rng.below(remaining) as i64);
    let last_message = rng.chance(0.85).then(|| {
        let back = rng
            .below(600)
            .min((updated_at - created_at).num_seconds().max(0) as u64);
        LastMessage {
            send_at: Some(updated_at - Duration::seconds(back as i64)),
        }
    });
    let chat = Chat {
        id: FIRST_CHAT_ID + index as i64,
        situation: situation.to_owned(),
        customer,
        department,
        channel: Some(channel(channel_id, uuid, channel_name)),
        workflow,
        created_at: Some(created_at),
        updated_at: Some(updated_at),
        last_message,
    };
    (chat, agent)
}

/// Lower-case ASCII form of a Portuguese name, for e-mail addresses.
fn ascii_fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'Á' | 'À' | 'Â' | 'Ã' => 'a',
            'é' | 'ê' | 'É' | 'Ê' => 'e',
            'í' | 'Í' => 'i',
            'ó' | 'ô' | 'õ' | 'Ó' | 'Ô' | 'Õ' => 'o',
            'ú' | 'ü' | 'Ú' | 'Ü' => 'u',
            'ç' | 'Ç' => 'c',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Parses `YYYY-MM-DD` (used by tests and by callers that check custom fields).
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = Dataset::generate(300, 200, 7);
        assert_eq!(a, Dataset::generate(300, 200, 7));
        assert_ne!(a.contacts, Dataset::generate(300, 200, 8).contacts);
        // A larger data set extends a smaller one.
        let small = Dataset::generate(50, 0, 7);
        assert_eq!(small.contacts[..], a.contacts[..50]);
    }

    #[test]
    fn prng_is_stable() {
        // Pinned outputs: a change here changes every data set.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut rng = SplitMix64::new(1);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn contacts_look_brazilian_and_varied() {
        let data = Dataset::generate(1000, 0, 42);
        let ids: Vec<i64> = data.contacts.iter().map(|c| c.id).collect();
        assert_eq!(ids, (1001..2001).collect::<Vec<_>>());
        for c in &data.contacts {
            let mobile = c.mobile.as_deref().unwrap();
            assert_eq!(mobile.len(), 13, "{mobile}");
            assert!(
                mobile.starts_with("55") && mobile.as_bytes()[4] == b'9',
                "{mobile}"
            );
            assert!(mobile.bytes().all(|b| b.is_ascii_digit()));
            if let Some(phone) = &c.phone {
                assert_eq!(phone.len(), 12);
                assert!(phone.bytes().all(|b| b.is_ascii_digit()));
            }
            if let Some(email) = &c.email {
                assert!(email.is_ascii() && email.contains('@'), "{email}");
            }
            let created = c.created_at.unwrap();
            let updated = c.updated_at.unwrap();
            assert!(created <= updated && updated <= epoch());
            assert!(created >= epoch() - Duration::days(731));
            assert!(c.name.as_deref().unwrap().contains(' '));
        }
        let count = |f: &dyn Fn(&Contact) -> bool| data.contacts.iter().filter(|c| f(c)).count();
        assert!(count(&|c| c.email.is_none()) > 30);
        assert!(count(&|c| c.phone.is_some()) > 200);
        assert!(count(&|c| c.group.is_none()) > 50);
        assert!(count(&|c| c.organization.is_none()) > 150);
        assert!(
            count(&|c| c
                .organization
                .as_ref()
                .is_some_and(|o| o.name.as_deref() == Some("Rotik")))
                > 20
        );
        assert!(
            count(&|c| c
                .group
                .as_ref()
                .is_some_and(|g| g.name.as_deref() == Some("VIP")))
                > 40
        );
        assert!(count(&|c| c.custom_fields.is_empty()) > 30);
        for plan in PLANS {
            assert!(count(&|c| c.custom_fields.get("plano") == Some(&Value::from(plan))) > 100);
        }
        let parses = |c: &Contact| {
            c.custom_fields
                .get("vencimento")
                .and_then(Value::as_str)
                .map(|v| parse_day(v).is_some())
        };
        assert!(count(&|c| parses(c) == Some(true)) > 500);
        assert!(count(&|c| parses(c) == Some(false)) > 0);
        assert!(
            count(&|c| c
                .custom_fields
                .get("pontos")
                .and_then(Value::as_str)
                .is_some_and(|p| p.parse::<u32>().is_err()))
                > 0
        );
    }

    #[test]
    fn boundary_contacts() {
        for seed in [0, 1, 42] {
            let data = Dataset::generate(5, 0, seed);
            let created: Vec<String> = data.contacts[..4]
                .iter()
                .map(|c| c.created_at.unwrap().to_rfc3339())
                .collect();
            assert_eq!(created, BOUNDARY_CREATED_AT);
            let on_new_years_eve = data
                .contacts
                .iter()
                .filter(|c| {
                    c.created_at.unwrap().date_naive()
                        == NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()
                })
                .count();
            assert_eq!(on_new_years_eve, 2);
        }
    }

    #[test]
    fn chats_spread_over_situations_departments_and_channels() {
        let data = Dataset::generate(100, 1000, 42);
        let count = |s: &str| data.chats.iter().filter(|c| c.situation == s).count();
        for s in [
            situation::AUTO,
            situation::WAIT_FOR_CHAT,
            situation::IN_CHAT,
        ] {
            assert!(count(s) > 150, "{s}: {}", count(s));
        }
        assert!(count(situation::FINISHING) > 30);
        assert!(count(situation::CLOSED) > 80);
        for (chat, agent) in data.chats.iter().zip(&data.agents) {
            let customer = chat.customer_id().unwrap();
            assert!((1001..1101).contains(&customer));
            assert!(chat.channel.as_ref().unwrap().uuid.is_some());
            assert_eq!(
                agent.is_some(),
                chat.situation == situation::IN_CHAT || !chat.is_open()
            );
            assert!(chat.created_at <= chat.updated_at);
        }
        for (id, _) in DEPARTMENTS {
            assert!(data
                .chats
                .iter()
                .any(|c| c.department.as_ref().map(|d| d.id) == Some(id)));
        }
        for (id, _, _) in CHANNELS {
            assert!(data
                .chats
                .iter()
                .any(|c| c.channel.as_ref().map(|ch| ch.id) == Some(id)));
        }
        assert!(data.chats.iter().any(|c| c.workflow.is_none()));
        assert!(data.chats.iter().any(|c| c.last_message.is_none()));
        assert!(Dataset::generate(0, 10, 1)
            .chats
            .iter()
            .all(|c| c.customer.is_none()));
    }

    #[test]
    fn folding() {
        assert_eq!(ascii_fold("Conceição"), "conceicao");
        assert_eq!(ascii_fold("Antônio"), "antonio");
        assert_eq!(ascii_fold("Araújo"), "araujo");
    }
}
