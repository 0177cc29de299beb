variable "name" {
  description = "Name prefix for every resource."
  type        = string
}

variable "weights_bucket_arn" {
  description = "ARN of the weights bucket the nodes read."
  type        = string
}

variable "weights_prefix" {
  description = "Key prefix inside the weights bucket the nodes may read (empty for the whole bucket)."
  type        = string
  default     = ""
}

variable "api_keys_secret_arn" {
  description = "ARN of the Secrets Manager secret with the API keys."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
