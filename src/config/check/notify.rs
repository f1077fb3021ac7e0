//! Webhook notifications.

use super::Checker;
use crate::config::file::WebhookFile;
use crate::config::model::WebhookConfig;
use toml::Spanned;

impl Checker {
    /// Every valid webhook; each problem reported with its location.
    pub(super) fn webhooks(&mut self, files: &[Spanned<WebhookFile>]) -> Vec<WebhookConfig> {
        self.unique_names(
            files.iter().map(|w| &w.get_ref().name),
            "notify.webhooks",
            "webhook",
        );
        files
            .iter()
            .filter_map(|file| self.webhook(file.get_ref()))
            .collect()
    }

    pub(super) fn webhook(&mut self, file: &WebhookFile) -> Option<WebhookConfig> {
        let url = match file.url.get_ref().parse::<http::Uri>() {
            Ok(url)
                if matches!(url.scheme_str(), Some("http" | "https"))
                    && url.authority().is_some() =>
            {
                url
            }
            _ => {
                self.report(
                    file.url.span(),
                    format!(
                        "notify.webhooks.url: {:?} is not an http:// or https:// URL",
                        file.url.get_ref()
                    ),
                );
                return None;
            }
        };
        let token =
            self.token_source(&file.token_env, &file.token_file, "notify.webhooks.token")?;
        let events = match &file.events {
            None => Vec::new(),
            Some(events) => {
                let unknown: Vec<&String> = events
                    .get_ref()
                    .iter()
                    .filter(|e| !WebhookConfig::EVENT_TYPES.contains(&e.as_str()))
                    .collect();
                if !unknown.is_empty() {
                    self.report(
                        events.span(),
                        format!(
                            "notify.webhooks.events: unknown event type {unknown:?}; expected some of {:?}",
                            WebhookConfig::EVENT_TYPES
                        ),
                    );
                }
                events.get_ref().clone()
            }
        };
        Some(WebhookConfig {
            name: file.name.get_ref().clone(),
            url,
            token,
            events,
            retries: self.int(
                &file.retries,
                "notify.webhooks.retries",
                0..=10,
                WebhookConfig::DEFAULT_RETRIES,
            ),
            backoff: self.duration(
                &file.backoff,
                "notify.webhooks.backoff",
                WebhookConfig::DEFAULT_BACKOFF,
            ),
            timeout: self.duration(
                &file.timeout,
                "notify.webhooks.timeout",
                WebhookConfig::DEFAULT_TIMEOUT,
            ),
            queue: self.int(
                &file.queue,
                "notify.webhooks.queue",
                1..=100_000,
                WebhookConfig::DEFAULT_QUEUE,
            ),
        })
    }
}
