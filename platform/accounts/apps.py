from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    # allauth's "account" app is "Accounts" in the admin too: two sections of one name.
    verbose_name = "Users"
    default_auto_field = "django.db.models.BigAutoField"
