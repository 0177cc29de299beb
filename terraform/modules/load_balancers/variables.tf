variable "name" {
  description = "Name prefix for every resource (load balancer names are cut to 32 characters)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the target groups."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (two or more AZs) for the ALB."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Private subnets for the internal NLB."
  type        = list(string)
}

variable "alb_security_group_id" {
  description = "Security group of the ALB."
  type        = string
}

variable "nlb_security_group_id" {
  description = "Security group of the NLB."
  type        = string
}

variable "head_instance_id" {
  description = "Instance that runs dsa-head (the only target)."
  type        = string
}

variable "head_port" {
  description = "TCP port dsa-head listens on."
  type        = number
}

variable "nlb_port" {
  description = "TCP port of the internal NLB listener."
  type        = number

  validation {
    condition     = var.nlb_port >= 1 && var.nlb_port <= 65535
    error_message = "nlb_port must be between 1 and 65535."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the ALB's HTTPS listener."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-zA-Z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "idle_timeout_seconds" {
  description = "ALB idle timeout; long generations stream for minutes, so keep it high."
  type        = number
  default     = 3600

  validation {
    condition     = var.idle_timeout_seconds >= 60 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be between 60 and 4000 (the ALB maximum)."
  }
}

variable "nlb_tcp_idle_timeout_seconds" {
  description = "NLB TCP idle timeout for streaming clients inside the VPC."
  type        = number
  default     = 3600

  validation {
    condition     = var.nlb_tcp_idle_timeout_seconds >= 60 && var.nlb_tcp_idle_timeout_seconds <= 6000
    error_message = "nlb_tcp_idle_timeout_seconds must be between 60 and 6000."
  }
}

variable "health_check_path" {
  description = "HTTP path both load balancers probe on the head."
  type        = string
  default     = "/health"

  validation {
    condition     = startswith(var.health_check_path, "/")
    error_message = "health_check_path must start with /."
  }
}

variable "internal_only_paths" {
  description = "Paths the public ALB answers with 403 instead of forwarding (each also with /* below it); the NLB inside the VPC still serves them."
  type        = list(string)
  default     = ["/metrics"]

  validation {
    condition     = length(var.internal_only_paths) >= 1 && length(var.internal_only_paths) <= 2 && alltrue([for p in var.internal_only_paths : startswith(p, "/")])
    error_message = "internal_only_paths must hold one or two paths starting with / (an ALB rule takes five path patterns at most)."
  }
}

variable "http_redirect" {
  description = "A port 80 listener that redirects to HTTPS (301, nothing forwarded); false: no port 80 listener."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Protect the load balancers from deletion."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
