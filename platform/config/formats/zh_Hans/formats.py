"""Chinese numbers grouped in threes with commas ("3,000,000"), as Chinese billing and finance pages write
them and as the catalogue's own figures do ("每 1,000 个"); Django's default for zh-Hans groups nothing
("3000000"). Dates keep Django's Chinese formats ("2026年12月4日")."""

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
