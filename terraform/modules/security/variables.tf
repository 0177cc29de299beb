variable "name" {
  description = "Name prefix for every resource."
  type        = string
}

variable "vpc_id" {
  description = "VPC the security groups belong to."
  type        = string
}

variable "head_port" {
  description = "TCP port dsa-head listens on."
  type        = number

  validation {
    condition     = var.head_port >= 1024 && var.head_port <= 65535
    error_message = "head_port must be an unprivileged port (1024-65535)."
  }
}

variable "public_ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach the public ALB on 443 (and on 80 when http_redirect is set)."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.public_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "Every entry of public_ingress_cidrs must be an IPv4 CIDR."
  }
}

variable "internal_client_cidrs" {
  description = "IPv4 CIDRs inside the VPC (or peered networks) allowed to reach the internal NLB."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.internal_client_cidrs : can(cidrhost(c, 0))])
    error_message = "Every entry of internal_client_cidrs must be an IPv4 CIDR."
  }
}

variable "http_redirect" {
  description = "Open port 80 of the ALB (it only redirects to HTTPS); false keeps it closed."
  type        = bool
  default     = false
}

variable "nlb_port" {
  description = "TCP port the internal NLB listens on."
  type        = number
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
